// Batched frames: a client that connects with `?batch=1` gets the frames one event-loop turn produces
// for it (or for a room it is in) joined with `\n` in one WebSocket frame; a client that did not ask
// gets one WebSocket frame per frame, as always. Real sockets against a server started here.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { frames } from "../../src/protocol/server-frames";
import { roomTopic } from "../../src/rooms/topics";
import type { TestClient } from "../helpers/client";
import { rawUpgrade } from "../helpers/http";
import { connId, startTestServer, type TestServer } from "../helpers/server";
import { waitFor } from "../helpers/wait";

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer({ BATCH_MAX_FRAMES: "4", BATCH_MAX_BYTES: "1024" });
});
afterAll(() => srv.stop());

/** The WebSocket frames received from `from` on, each split into the JSON frames it holds. */
function wireSince(client: TestClient, from: number) {
  return client.wire.slice(from).map((text) => text.split("\n").map((line) => JSON.parse(line)));
}

/** The texts of the `system` frames in each WebSocket frame received from `from` on (others skipped). */
function systemSince(client: TestClient, from: number) {
  return wireSince(client, from)
    .map((batch) => batch.filter((f) => f.type === "system").map((f) => f.text))
    .filter((texts) => texts.length > 0);
}

async function joined(room: string, ...queries: string[]) {
  const clients: TestClient[] = [];
  for (const query of queries) {
    const client = await srv.connect(connId(), query);
    expect((await client.request({ type: "join", room })).ok).toBe(true);
    clients.push(client);
  }
  return clients;
}

describe("negotiation", () => {
  test("?batch=1 is announced with its caps in connection_established; a plain client sees no batch field", async () => {
    const batched = await srv.connect(connId(), "user=b&batch=1");
    const plain = await srv.connect(connId(), "user=p");
    const [established] = wireSince(batched, 0)[0]!;
    expect(established).toMatchObject({ type: "connection_established", batch: { maxFrames: 4, maxBytes: 1024 } });
    const [plainEstablished] = wireSince(plain, 0)[0]!;
    expect(plainEstablished.type).toBe("connection_established");
    expect("batch" in plainEstablished).toBe(false);
    // batch=0 is the same as leaving it out.
    const off = await srv.connect(connId(), "batch=0");
    expect("batch" in wireSince(off, 0)[0]![0]).toBe(false);
  });

  test("a batch value other than 0 or 1 gets 400 JSON invalid_batch", async () => {
    for (const value of ["yes", "2", "true", ""]) {
      const res = await rawUpgrade(srv.port, `/ws/chat/${connId()}?batch=${value}`);
      expect(res.status, value).toBe(400);
      expect(JSON.parse(res.body)).toMatchObject({ error: "invalid_batch" });
    }
  });
});

describe("room frames", () => {
  test("frames published to a room in one turn reach a batched member in one WebSocket frame, a plain member one by one", async () => {
    const room = "batched-turn";
    const [batched, plain] = await joined(room, "batch=1", "");
    const fromBatched = batched!.wire.length;
    const fromPlain = plain!.wire.length;
    for (const text of ["one", "two", "three"])
      srv.server.chat.publish(roomTopic(room), frames.system(text, 1), "system");
    await batched!.next((f) => f.type === "system" && f.text === "three");
    await plain!.next((f) => f.type === "system" && f.text === "three");
    expect(systemSince(batched!, fromBatched)).toEqual([["one", "two", "three"]]);
    expect(systemSince(plain!, fromPlain)).toEqual([["one"], ["two"], ["three"]]);
  });

  test("a batch holds at most BATCH_MAX_FRAMES frames; the rest follow in order", async () => {
    const room = "batched-count";
    const [batched] = await joined(room, "batch=1");
    const from = batched!.wire.length;
    for (let i = 1; i <= 9; i++) srv.server.chat.publish(roomTopic(room), frames.system(`n${i}`, 1), "system");
    await batched!.next((f) => f.type === "system" && f.text === "n9");
    expect(systemSince(batched!, from)).toEqual([["n1", "n2", "n3", "n4"], ["n5", "n6", "n7", "n8"], ["n9"]]);
  });

  test("a batch stays within BATCH_MAX_BYTES; a larger frame is sent alone", async () => {
    const room = "batched-bytes";
    const [batched] = await joined(room, "batch=1");
    const from = batched!.wire.length;
    const texts = ["a".repeat(400), "b".repeat(400), "c".repeat(400), "d".repeat(1500), "e"];
    for (const text of texts) srv.server.chat.publish(roomTopic(room), frames.system(text, 1), "system");
    await batched!.next((f) => f.type === "system" && f.text === "e");
    const received = batched!.wire.slice(from);
    expect(received.map((text) => text.split("\n").map((line) => JSON.parse(line).text[0]))).toEqual([
      ["a", "b"],
      ["c"],
      ["d"],
      ["e"],
    ]);
    for (const text of received.slice(0, 2)) expect(Buffer.byteLength(text)).toBeLessThanOrEqual(1024);
  });

  test("messages from clients reach batched and plain members complete, once each, in offset order", async () => {
    const room = "batched-chat";
    const [alice, bob, carol] = await joined(room, "user=alice&batch=1", "user=bob", "user=carol&batch=1");
    const fromBob = bob!.wire.length;
    const count = 40;
    for (let i = 1; i <= count; i++) alice!.send({ type: "message", room, text: `m${i}`, clientMsgId: `c-${i}` });
    for (const member of [alice!, bob!, carol!]) {
      const offsets: number[] = [];
      for (let i = 1; i <= count; i++) offsets.push((await member.next("message")).offset);
      expect(offsets).toEqual(Array.from({ length: count }, (_, i) => i + 1));
      await member.expectNone("message", 50);
    }
    // The plain member got one WebSocket frame per message, none joined.
    const plainMessages = bob!.wire.slice(fromBob).filter((text) => text.includes('"type":"message"'));
    expect(plainMessages.length).toBe(count);
    for (const text of plainMessages) expect(text.includes("\n")).toBe(false);
    // Every acknowledgement reached the batched sender.
    await waitFor(() => alice!.all("message_response").length === count, { what: "40 acknowledgements" });
  });

  test("a batched member's typing reaches the others, batched and plain, but not itself", async () => {
    const room = "batched-typing";
    const [alice, bob, carol] = await joined(room, "user=alice&batch=1", "user=bob", "user=carol&batch=1");
    expect((await alice!.request({ type: "typing", room, active: true })).ok).toBe(true);
    expect(await bob!.next("typing")).toMatchObject({ room, from: "alice", active: true });
    expect(await carol!.next("typing")).toMatchObject({ room, from: "alice", active: true });
    await alice!.sync();
    expect(alice!.all("typing")).toEqual([]);
    // And a plain sender's typing reaches batched members.
    expect((await bob!.request({ type: "typing", room, active: false })).ok).toBe(true);
    expect(await carol!.next("typing")).toMatchObject({ from: "bob", active: false });
  });
});

describe("frames for one connection", () => {
  test("a join's replay and its answer come in one WebSocket frame, replay first", async () => {
    const room = "batched-replay";
    const [writer] = await joined(room, "user=w");
    for (let i = 1; i <= 3; i++) {
      expect((await writer!.request({ type: "message", room, text: `r${i}`, clientMsgId: `r-${i}` })).ok).toBe(true);
    }
    const reader = await srv.connect(connId(), "user=r&batch=1");
    const from = reader.wire.length;
    const answer = await reader.request({ type: "join", room, lastOffset: 0 });
    expect(answer).toMatchObject({ ok: true, recovered: true, offset: 3 });
    const batches = wireSince(reader, from);
    expect(batches.length).toBe(1);
    expect(batches[0]!.map((f) => f.type)).toEqual(["message", "message", "message", "message_response"]);
    expect(batches[0]!.slice(0, 3).map((f) => f.offset)).toEqual([1, 2, 3]);
  });

  test("a broadcast notice reaches batched and plain connections", async () => {
    const batched = await srv.connect(connId(), "batch=1");
    const plain = await srv.connect(connId());
    srv.server.chat.broadcast("hello everyone");
    expect(await batched.next("system")).toMatchObject({ text: "hello everyone" });
    expect(await plain.next("system")).toMatchObject({ text: "hello everyone" });
  });

  test("errors pending for a batched connection are sent before it is closed for invalid frames", async () => {
    const client = await srv.connect(connId(), "batch=1");
    for (let i = 0; i < 11; i++) client.send("not json");
    const closed = await client.closed;
    expect(closed.code).toBe(1003);
    expect(client.all("error").length).toBe(11);
  });
});
