// Sessions and tokens: a resumed or handed-over connection and an `auth` frame keep only the rooms
// the current token opens; a connectionId, open or saved, belongs to the user who opened it.
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

const admin = (sub: string) => hsToken(sub, { roles: ["admin"] });
const released = (server: TestServer, id: string) =>
  waitFor(() => server.server.registry.get(id) === undefined, { what: `${id} released` });

describe("rooms are re-checked against the current token", () => {
  test("a session resumed with a token without the role does not get its admin: room back", async () => {
    const id = connId();
    const watcher = await srv.connect(connId(), `token=${await admin("resume-watcher")}`);
    await watcher.request({ type: "join", room: "admin:resume" });
    let client = await srv.connect(id, `token=${await admin("resume-user")}`);
    await client.request({ type: "join", room: "admin:resume" });
    await client.request({ type: "join", room: "resume-lobby" });
    await client.close();
    await released(srv, id);

    client = await srv.connect(id, `token=${await hsToken("resume-user")}`, { waitEstablished: false });
    expect(await client.next("connection_established")).toMatchObject({ resumed: true, rooms: ["resume-lobby"] });
    expect(await client.request({ type: "typing", room: "admin:resume", active: true })).toMatchObject({
      code: "not_in_room",
    });
    await watcher.request({ type: "message", room: "admin:resume", text: "ops only", clientMsgId: "ops-1" });
    await client.sync();
    expect(client.all("message")).toEqual([]);
    expect((await watcher.request({ type: "presence", room: "admin:resume" })).members).toEqual(["resume-watcher"]);
  });

  test("a socket taking over a live connectionId with a token without the role leaves the admin: room", async () => {
    const id = connId();
    const watcher = await srv.connect(connId(), `token=${await admin("handover-watcher")}`);
    await watcher.request({ type: "join", room: "admin:handover" });
    const old = await srv.connect(id, `token=${await admin("handover-user")}`);
    await old.request({ type: "join", room: "admin:handover" });
    await old.request({ type: "join", room: "handover-lobby" });
    await watcher.next((f) => f.type === "presence_diff" && f.joins.includes("handover-user"));

    const fresh = await srv.connect(id, `token=${await hsToken("handover-user")}`, { waitEstablished: false });
    expect(await fresh.next("connection_established")).toMatchObject({ resumed: true, rooms: ["handover-lobby"] });
    expect((await old.closed).code).toBe(4001);
    expect(
      await watcher.next((f) => f.type === "presence_diff" && f.room === "admin:handover" && f.leaves.length > 0),
    ).toMatchObject({ leaves: ["handover-user"] });
    await watcher.request({ type: "message", room: "admin:handover", text: "ops only", clientMsgId: "ho-1" });
    await fresh.sync();
    expect(fresh.all("message")).toEqual([]);
  });

  test("an auth frame whose token drops the role leaves the admin: room and says so", async () => {
    const watcher = await srv.connect(connId(), `token=${await admin("auth-watcher")}`);
    await watcher.request({ type: "join", room: "admin:auth" });
    const client = await srv.connect(connId(), `token=${await admin("auth-user")}`);
    await client.request({ type: "join", room: "admin:auth" });
    await client.request({ type: "join", room: "auth-lobby" });

    const kept = await client.request({ type: "auth", token: await admin("auth-user") });
    expect(kept).toMatchObject({ for: "auth", left: [] });
    const dropped = await client.request({ type: "auth", token: await hsToken("auth-user") });
    expect(dropped).toMatchObject({ for: "auth", left: ["admin:auth"] });
    expect(await watcher.next((f) => f.type === "presence_diff" && f.leaves.includes("auth-user"))).toMatchObject({
      room: "admin:auth",
    });
    await watcher.request({ type: "message", room: "admin:auth", text: "ops only", clientMsgId: "au-1" });
    await client.sync();
    expect(client.all("message")).toEqual([]);
    expect(await client.request({ type: "join", room: "admin:auth" })).toMatchObject({ code: "forbidden" });
    expect(await client.request({ type: "presence", room: "auth-lobby" })).toMatchObject({ members: ["auth-user"] });
  });
});

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
