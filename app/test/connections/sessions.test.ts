// One connectionId, several sockets over time: a newer socket of the same user replaces a live one
// (4001) and takes its rooms over; a socket after a close within SESSION_TTL resumes the session and
// its rooms. Another user cannot take a connectionId that is open.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Frame } from "../helpers/client";
import { upgrade } from "../helpers/http";
import { sample, scrape } from "../helpers/metrics";
import { connId, startTestServer, type TestServer } from "../helpers/server";
import { waitFor } from "../helpers/wait";

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer({ SESSION_TTL: "1" });
});
afterAll(() => srv.stop());

const texts = (frames: Frame[]) => frames.map((f) => f.text);

describe("replace", () => {
  test("a second socket with a live connectionId closes the first with 4001 and keeps its rooms", async () => {
    const id = connId();
    const watcher = await srv.connect(connId(), "user=rep-watcher");
    await watcher.request({ type: "join", room: "rep-room" });
    const old = await srv.connect(id, "user=rep-user");
    await old.request({ type: "join", room: "rep-room" });
    await watcher.next((f) => f.type === "presence_diff" && f.joins.includes("rep-user"));

    const fresh = await srv.connect(id, "user=rep-user", { waitEstablished: false });
    expect(await fresh.next("connection_established")).toMatchObject({
      connectionId: id,
      userId: "rep-user",
      resumed: true,
      rooms: ["rep-room"],
    });
    expect(await old.closed).toEqual({ code: 4001, reason: "replaced by a newer connection" });

    // The user never left: no presence change, and the new socket gets the room's messages.
    await watcher.request({ type: "message", room: "rep-room", text: "still there?", clientMsgId: "rep-1" });
    expect((await fresh.next("message")).text).toBe("still there?");
    await watcher.sync();
    expect(watcher.frames.filter((f) => f.type === "presence_diff" && f.leaves.length > 0)).toEqual([]);
    expect((await watcher.request({ type: "presence", room: "rep-room" })).members).toEqual([
      "rep-user",
      "rep-watcher",
    ]);
    expect((await fresh.request({ type: "typing", room: "rep-room", active: true })).ok).toBe(true);

    await waitFor(() => srv.server.registry.get(id) !== undefined && srv.server.registry.size === 2, {
      what: "one live socket per connectionId",
    });
    expect(sample(await scrape(srv.httpUrl), "websocket_disconnects_total", { code: "4001" })).toBeGreaterThanOrEqual(
      1,
    );
  });

  test("a second socket of another user with the same connectionId is refused (409); the first keeps its rooms", async () => {
    const id = connId();
    const old = await srv.connect(id, "user=owner");
    await old.request({ type: "join", room: "rep-other" });
    const answer = await upgrade(srv.wsUrl(id, "user=intruder"));
    expect(answer).toMatchObject({ status: 409, body: { error: "connection_id_in_use" } });
    expect(old.ws.readyState).toBe(WebSocket.OPEN);
    expect(await old.request({ type: "presence", room: "rep-other" })).toMatchObject({ members: ["owner"] });
    expect(srv.server.registry.get(id)?.userId).toBe("owner");
  });
});

describe("resume", () => {
  test("reconnecting within SESSION_TTL resumes the rooms; join with lastOffset replays the missed messages once", async () => {
    const id = connId();
    const sender = await srv.connect(connId(), "user=res-sender");
    await sender.request({ type: "join", room: "res-room" });
    let client = await srv.connect(id, "user=res-user");
    const joined = await client.request({ type: "join", room: "res-room" });
    await sender.request({ type: "message", room: "res-room", text: "m1", clientMsgId: "r1" });
    const seen = await client.next("message");
    await client.close();
    await sender.next((f) => f.type === "presence_diff" && f.leaves.includes("res-user"));

    // Missed while away.
    await sender.request({ type: "message", room: "res-room", text: "m2", clientMsgId: "r2" });
    await sender.request({ type: "message", room: "res-room", text: "m3", clientMsgId: "r3" });

    client = await srv.connect(id, "user=res-user", { waitEstablished: false });
    expect(await client.next("connection_established")).toMatchObject({ resumed: true, rooms: ["res-room"] });
    expect(await sender.next((f) => f.type === "presence_diff" && f.joins.includes("res-user"))).toMatchObject({
      leaves: [],
    });
    // Sent after the resume and before the join: delivered live, not replayed again.
    await sender.request({ type: "message", room: "res-room", text: "m4", clientMsgId: "r4" });
    expect((await client.next("message")).text).toBe("m4");

    const answer = await client.request({
      type: "join",
      room: "res-room",
      lastOffset: seen.offset,
      epoch: joined.epoch,
    });
    expect(answer).toMatchObject({ for: "join", room: "res-room", recovered: true, offset: 4, epoch: joined.epoch });
    await sender.request({ type: "message", room: "res-room", text: "m5", clientMsgId: "r5" });
    expect((await client.next((f) => f.type === "message" && f.text === "m5")).offset).toBe(5);
    await client.sync();
    // m2 and m3 came before the join answer, in order; nothing arrived twice.
    expect(texts(client.all("message"))).toEqual(["m2", "m3"]);
  });

  test("a resumed session is taken once: the old rooms do not come back after a second clean start", async () => {
    const id = connId();
    let client = await srv.connect(id, "user=once");
    await client.request({ type: "join", room: "res-once" });
    await client.close();
    await waitFor(() => srv.server.registry.get(id) === undefined, { what: "the first socket released" });
    client = await srv.connect(id, "user=once", { waitEstablished: false });
    expect(await client.next("connection_established")).toMatchObject({ resumed: true, rooms: ["res-once"] });
    await client.request({ type: "leave", room: "res-once" });
    await client.close();
    await waitFor(() => srv.server.registry.get(id) === undefined, { what: "the second socket released" });
    client = await srv.connect(id, "user=once", { waitEstablished: false });
    expect(await client.next("connection_established")).toMatchObject({ resumed: true, rooms: [] });
  });

  test("another user cannot resume someone else's session", async () => {
    const id = connId();
    const owner = await srv.connect(id, "user=res-owner");
    await owner.request({ type: "join", room: "res-private" });
    await owner.close();
    await waitFor(() => srv.server.registry.get(id) === undefined, { what: "the owner's socket released" });
    const other = await srv.connect(id, "user=res-thief", { waitEstablished: false });
    expect(await other.next("connection_established")).toMatchObject({
      userId: "res-thief",
      resumed: false,
      rooms: [],
    });
  });

  test("after SESSION_TTL the connectionId starts afresh", async () => {
    const id = connId();
    const client = await srv.connect(id, "user=late");
    await client.request({ type: "join", room: "res-late" });
    await client.close();
    await waitFor(() => srv.server.registry.get(id) === undefined, { what: "the socket released" });
    // Expiry is the passing of time itself: wait out SESSION_TTL (1 s).
    await Bun.sleep(1100);
    const later = await srv.connect(id, "user=late", { waitEstablished: false });
    expect(await later.next("connection_established")).toMatchObject({ resumed: false, rooms: [] });
  });
});
