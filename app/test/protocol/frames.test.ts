// Every client frame type of protocol v1 and the one answer it gets, over a real socket.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connId, startTestServer, type TestServer } from "../helpers/server";

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer({ COLOR: "blue", INSTANCE_ID: "frames-1", APP_VERSION: "9.8.7" });
});
afterAll(() => srv.stop());

describe("connection_established", () => {
  test("describes the connection, the instance and the protocol", async () => {
    const id = connId();
    const client = await srv.connect(id, "user=alice", { waitEstablished: false });
    const hello = await client.next("connection_established");
    expect(hello).toEqual({
      type: "connection_established",
      connectionId: id,
      userId: "alice",
      instanceId: "frames-1",
      color: "blue",
      version: "9.8.7",
      protocol: 1,
      heartbeatIntervalMs: 30000,
      // The test server's limits, raised out of the way of the tests: what is configured is announced.
      frameRate: srv.config.frameRate,
      frameBurst: srv.config.frameBurst,
      resumed: false,
      rooms: [],
    });
  });

  test("without a user parameter the user id is the connectionId", async () => {
    const id = connId();
    const client = await srv.connect(id, undefined, { waitEstablished: false });
    expect((await client.next("connection_established")).userId).toBe(id);
  });
});

describe("answers", () => {
  test("ping gets pong with the ref and a timestamp", async () => {
    const client = await srv.connect();
    const before = Date.now();
    client.send({ type: "ping", ref: "p-1" });
    const pong = await client.next("pong");
    expect(pong.ref).toBe("p-1");
    expect(pong.ts).toBeGreaterThanOrEqual(before);
    expect(pong.ts).toBeLessThanOrEqual(Date.now());
  });

  test("a frame without ref gets an answer without ref", async () => {
    const client = await srv.connect();
    client.send({ type: "ping" });
    expect(Object.keys(await client.next("pong")).sort()).toEqual(["ts", "type"]);
  });

  test("join answers message_response with the room's epoch and offset, recovered false", async () => {
    const client = await srv.connect(connId(), "user=joiner");
    const answer = await client.request({ type: "join", room: "frames-join" });
    expect(answer).toMatchObject({
      type: "message_response",
      ok: true,
      for: "join",
      room: "frames-join",
      offset: 0,
      recovered: false,
    });
    expect(typeof answer.epoch).toBe("string");
    expect(answer.epoch.length).toBeGreaterThan(0);
  });

  test("leave answers message_response for leave", async () => {
    const client = await srv.connect();
    await client.request({ type: "join", room: "frames-leave" });
    expect(await client.request({ type: "leave", room: "frames-leave" })).toMatchObject({
      type: "message_response",
      ok: true,
      for: "leave",
      room: "frames-leave",
    });
  });

  test("message answers with the stored id, offset and ts, and is delivered as a message frame", async () => {
    const alice = await srv.connect(connId(), "user=alice");
    const bob = await srv.connect(connId(), "user=bob");
    await alice.request({ type: "join", room: "frames-msg" });
    await bob.request({ type: "join", room: "frames-msg" });
    const answer = await alice.request({ type: "message", room: "frames-msg", text: "hi bob", clientMsgId: "c-1" });
    expect(answer).toEqual({
      type: "message_response",
      ref: expect.any(String),
      ok: true,
      for: "message",
      room: "frames-msg",
      id: expect.any(String),
      offset: 1,
      ts: expect.any(Number),
    });
    const expected = {
      type: "message",
      room: "frames-msg",
      id: answer.id,
      offset: 1,
      from: "alice",
      text: "hi bob",
      ts: answer.ts,
      clientMsgId: "c-1",
    };
    expect(await bob.next("message")).toEqual(expected);
    // The sender sees its own message in the room's stream too.
    expect(await alice.next("message")).toEqual(expected);
  });

  test("a repeated clientMsgId answers the first result as a duplicate and is not delivered again", async () => {
    const alice = await srv.connect(connId(), "user=dup-alice");
    const bob = await srv.connect(connId(), "user=dup-bob");
    await alice.request({ type: "join", room: "frames-dup" });
    await bob.request({ type: "join", room: "frames-dup" });
    const first = await alice.request({ type: "message", room: "frames-dup", text: "once", clientMsgId: "same" });
    const again = await alice.request({ type: "message", room: "frames-dup", text: "once", clientMsgId: "same" });
    expect(again).toMatchObject({ for: "message", ok: true, duplicate: true, id: first.id, offset: first.offset });
    await bob.next((f) => f.type === "message" && f.id === first.id);
    const next = await alice.request({ type: "message", room: "frames-dup", text: "twice", clientMsgId: "other" });
    expect(next.offset).toBe(first.offset + 1);
    // The next message bob sees is the new one: the duplicate was never fanned out.
    expect((await bob.next("message")).id).toBe(next.id);
  });

  test("direct reaches the recipient and the sender's other sockets, each with its inbox offset, and answers with id, ts and the sender's offset", async () => {
    const alice = await srv.connect(connId(), "user=dm-alice");
    const aliceTab = await srv.connect(connId(), "user=dm-alice");
    const bob = await srv.connect(connId(), "user=dm-bob");
    const carol = await srv.connect(connId(), "user=dm-carol");
    const answer = await alice.request({ type: "direct", to: "dm-bob", text: "psst", clientMsgId: "d-1" });
    expect(answer).toMatchObject({ type: "message_response", ok: true, for: "direct", to: "dm-bob" });
    const expected = {
      type: "direct",
      id: answer.id,
      from: "dm-alice",
      to: "dm-bob",
      text: "psst",
      ts: answer.ts,
      clientMsgId: "d-1",
    };
    // Each side's copy counts in that user's own inbox: bob's first entry, alice's as answered.
    const toBob = await bob.next("direct");
    expect(toBob).toEqual({ ...expected, offset: 1, epoch: toBob.epoch });
    expect(typeof toBob.epoch).toBe("string");
    expect(await aliceTab.next("direct")).toEqual({ ...expected, offset: answer.offset, epoch: answer.epoch });
    expect(answer.offset).toBe(1);
    await carol.sync();
    expect(carol.all("direct")).toEqual([]);
  });

  test("typing answers message_response and reaches the other members only", async () => {
    const alice = await srv.connect(connId(), "user=ty-alice");
    const bob = await srv.connect(connId(), "user=ty-bob");
    await alice.request({ type: "join", room: "frames-typing" });
    await bob.request({ type: "join", room: "frames-typing" });
    expect(await alice.request({ type: "typing", room: "frames-typing", active: true })).toMatchObject({
      type: "message_response",
      ok: true,
      for: "typing",
      room: "frames-typing",
    });
    expect(await bob.next("typing")).toEqual({ type: "typing", room: "frames-typing", from: "ty-alice", active: true });
    await alice.sync();
    expect(alice.all("typing")).toEqual([]);
  });

  test("read answers message_response with the offset and reaches the other members only", async () => {
    const alice = await srv.connect(connId(), "user=rd-alice");
    const bob = await srv.connect(connId(), "user=rd-bob");
    await alice.request({ type: "join", room: "frames-read" });
    await bob.request({ type: "join", room: "frames-read" });
    expect(await alice.request({ type: "read", room: "frames-read", offset: 7 })).toMatchObject({
      type: "message_response",
      ok: true,
      for: "read",
      room: "frames-read",
      offset: 7,
    });
    expect(await bob.next("read")).toEqual({ type: "read", room: "frames-read", from: "rd-alice", offset: 7 });
    await alice.sync();
    expect(alice.all("read")).toEqual([]);
  });

  test("history answers a history frame", async () => {
    const client = await srv.connect(connId(), "user=hist");
    await client.request({ type: "join", room: "frames-history" });
    await client.request({ type: "message", room: "frames-history", text: "one", clientMsgId: "h-1" });
    const answer = await client.request({ type: "history", room: "frames-history" });
    expect(answer).toMatchObject({ type: "history", room: "frames-history", hasMore: false });
    expect(answer.messages.map((m: { text: string }) => m.text)).toEqual(["one"]);
  });

  test("presence answers a presence frame with the sorted members", async () => {
    const bob = await srv.connect(connId(), "user=pr-bob");
    const alice = await srv.connect(connId(), "user=pr-alice");
    await bob.request({ type: "join", room: "frames-presence" });
    await alice.request({ type: "join", room: "frames-presence" });
    expect(await bob.request({ type: "presence", room: "frames-presence" })).toMatchObject({
      type: "presence",
      room: "frames-presence",
      members: ["pr-alice", "pr-bob"],
    });
  });
});
