import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { TestClient } from "../helpers/client";
import { connId, startTestServer, type TestServer } from "../helpers/server";

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer();
});
afterAll(() => srv.stop());

describe("room chat", () => {
  test("a message reaches every member of the room with a dense offset", async () => {
    const alice = await TestClient.connect(srv.wsUrl(connId(), "user=alice"));
    const bob = await TestClient.connect(srv.wsUrl(connId(), "user=bob"));
    expect((await alice.request({ type: "join", room: "smoke" })).ok).toBe(true);
    expect((await bob.request({ type: "join", room: "smoke" })).ok).toBe(true);
    const answer = await alice.request({ type: "message", room: "smoke", text: "hello", clientMsgId: "m-1" });
    expect(answer).toMatchObject({ type: "message_response", ok: true, for: "message", offset: 1 });
    const got = await bob.next("message");
    expect(got).toMatchObject({ room: "smoke", from: "alice", text: "hello", offset: 1, id: answer.id });
    await alice.close();
    await bob.close();
  });
});
