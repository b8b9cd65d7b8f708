// Sessions and tokens: a connectionId, open or saved, belongs to the user who opened it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { upgrade } from "../helpers/http";
import { hsToken, TEST_SECRET } from "../helpers/jwt";
import { connId, startTestServer, type TestServer } from "../helpers/server";
import { waitFor } from "../helpers/wait";

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer({ AUTH_REQUIRED: "true", JWT_SECRET: TEST_SECRET });
});
afterAll(() => srv.stop());

const released = (server: TestServer, id: string) =>
  waitFor(() => server.server.registry.get(id) === undefined, { what: `${id} released` });

describe("a connectionId belongs to the user who opened it", () => {
  test("another user's token with an open connectionId is refused with 409; the owner keeps its socket", async () => {
    const id = connId();
    const owner = await srv.connect(id, `token=${await hsToken("id-owner")}`);
    await owner.request({ type: "join", room: "id-room" });
    const answer = await upgrade(srv.wsUrl(id, `token=${await hsToken("id-thief")}`));
    expect(answer).toMatchObject({ status: 409, body: { error: "connection_id_in_use" } });
    expect(owner.ws.readyState).toBe(WebSocket.OPEN);
    expect(await owner.request({ type: "presence", room: "id-room" })).toMatchObject({ members: ["id-owner"] });
  });

  test("another user connecting with a saved connectionId gets a fresh start and leaves the session alone", async () => {
    const id = connId();
    let owner = await srv.connect(id, `token=${await hsToken("saved-owner")}`);
    await owner.request({ type: "join", room: "saved-room" });
    await owner.close();
    await released(srv, id);

    const thief = await srv.connect(id, `token=${await hsToken("saved-thief")}`, { waitEstablished: false });
    expect(await thief.next("connection_established")).toMatchObject({ resumed: false, rooms: [] });
    await thief.close();
    await released(srv, id);

    owner = await srv.connect(id, `token=${await hsToken("saved-owner")}`, { waitEstablished: false });
    expect(await owner.next("connection_established")).toMatchObject({ resumed: true, rooms: ["saved-room"] });
  });
});
