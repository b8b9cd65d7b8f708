// The client library against a real in-process server: requests and their answers, events, queueing.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type ChatClient, ChatClientError, type ConnectOptions, connect } from "../../client/index";
import { connId, startTestServer, type TestServer } from "../helpers/server";
import { Recorder } from "./support";

let srv: TestServer;
const clients: ChatClient[] = [];
beforeAll(async () => {
  srv = await startTestServer();
});
afterAll(async () => {
  for (const c of clients) c.close();
  await srv.stop();
});

async function open(user: string, options: Partial<ConnectOptions> = {}) {
  const client = connect(srv.httpUrl, { connectionId: connId(user), user, ...options });
  clients.push(client);
  const events = new Recorder(client);
  await events.state("open");
  return { client, events };
}

describe("requests", () => {
  test("send resolves with the stored message; members and the sender get it once", async () => {
    const alice = await open("alice");
    const bob = await open("bob");
    await alice.client.join("lib-basic");
    const joined = await bob.client.join("lib-basic");
    expect(joined).toMatchObject({ room: "lib-basic", recovered: false, rejoin: false });

    const sent = await alice.client.send("lib-basic", "hello bob");
    expect(sent).toMatchObject({ room: "lib-basic", offset: 1, duplicate: false });
    const got = await bob.events.next("message");
    expect(got).toMatchObject({
      id: sent.id,
      from: "alice",
      text: "hello bob",
      offset: 1,
      clientMsgId: sent.clientMsgId,
    });
    expect((await alice.events.next("message")).id).toBe(sent.id);
    expect(bob.client.joinedRooms).toEqual([{ room: "lib-basic", epoch: joined.epoch, offset: 1 }]);
  });

  test("an error frame with the same ref rejects the request with the server's code", async () => {
    const { client } = await open("carol");
    const error = await client.send("not-joined", "hi").catch((e) => e);
    expect(error).toBeInstanceOf(ChatClientError);
    expect(error).toMatchObject({ code: "not_in_room", temporary: false });
    const tooLong = await client.join("bad room!").catch((e) => e);
    expect(tooLong).toMatchObject({ code: "invalid_frame" });
  });

  test("a direct message reaches every connection of the recipient and the sender's other ones", async () => {
    const dave1 = await open("dave");
    const dave2 = await open("dave");
    const erin1 = await open("erin");
    const erin2 = await open("erin");
    const sent = await dave1.client.sendDirect("erin", "psst");
    for (const c of [dave1, dave2, erin1, erin2]) {
      expect(await c.events.next("direct")).toMatchObject({ id: sent.id, from: "dave", to: "erin", text: "psst" });
    }
  });

  test("typing, read receipts and presence reach the other members", async () => {
    const frank = await open("frank");
    const gina = await open("gina");
    await frank.client.join("lib-presence");
    await gina.client.join("lib-presence");
    expect(await frank.events.next("presence_diff", (d) => d.joins.includes("gina"))).toMatchObject({
      room: "lib-presence",
    });
    expect((await frank.client.presence("lib-presence")).sort()).toEqual(["frank", "gina"]);

    await gina.client.typing("lib-presence", true);
    expect(await frank.events.next("typing")).toEqual({ room: "lib-presence", from: "gina", active: true });
    const sent = await frank.client.send("lib-presence", "are you there?");
    await gina.client.markRead("lib-presence", sent.offset);
    expect(await frank.events.next("read")).toEqual({ room: "lib-presence", from: "gina", offset: sent.offset });
    expect(await gina.client.ping()).toBeGreaterThanOrEqual(0);
    const history = await gina.client.history("lib-presence");
    expect(history.messages.map((m) => m.text)).toEqual(["are you there?"]);
  });

  test("join gives the user's read position and unread count; markRead moves it for every device", async () => {
    const hana = await open("hana");
    await hana.client.join("lib-unread");
    for (const text of ["one", "two", "three"]) await hana.client.send("lib-unread", text);
    const phone = await open("ivan");
    expect(await phone.client.join("lib-unread")).toMatchObject({ offset: 3, readOffset: 0, unread: 3 });
    expect(await phone.client.markRead("lib-unread", 2)).toBe(2);
    expect(await phone.client.markRead("lib-unread", 1)).toBe(2);
    const laptop = await open("ivan");
    expect(await laptop.client.join("lib-unread")).toMatchObject({ offset: 3, readOffset: 2, unread: 1 });
  });
});

describe("batched frames", () => {
  test("by default the client asks for batched frames and emits each frame of a batch, in order; batch: false asks for none", async () => {
    const batched = await open("bea");
    const plain = await open("pat", { batch: false });
    expect(new URL(batched.client.url).searchParams.get("batch")).toBe("1");
    expect(batched.client.session?.batch).toEqual({ maxFrames: 64, maxBytes: 65536 });
    expect(new URL(plain.client.url).searchParams.has("batch")).toBe(false);
    expect(plain.client.session?.batch).toBeUndefined();
    await batched.client.join("lib-batched");
    await plain.client.join("lib-batched");
    // Sent at once: the server handles them in few turns, so the batched client gets them joined.
    const sends = Array.from({ length: 30 }, (_, i) => plain.client.send("lib-batched", `b${i}`));
    await Promise.all(sends);
    const texts: string[] = [];
    for (let i = 0; i < 30; i++) texts.push((await batched.events.next("message")).text);
    expect(texts).toEqual(Array.from({ length: 30 }, (_, i) => `b${i}`));
    // A join's replay and its answer come in one WebSocket frame (one turn): every message is emitted
    // once and in order, and the join resolves after them.
    const late = await open("lou");
    const { epoch } = await plain.client.join("lib-batched");
    const rejoined = await late.client.join("lib-batched", { epoch, offset: 0 });
    expect(rejoined).toMatchObject({ recovered: true, offset: 30 });
    const replayed: number[] = [];
    for (let i = 0; i < 30; i++) replayed.push((await late.events.next("message")).offset);
    expect(replayed).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
  });
});

describe("while disconnected", () => {
  test("messages wait in a bounded queue; a full queue rejects at once; close rejects the rest", async () => {
    // Nothing listens on this port: the client stays disconnected.
    const client = connect("ws://127.0.0.1:9", {
      connectionId: connId("queue"),
      maxQueue: 2,
      backoff: { minMs: 5_000, maxMs: 5_000 },
    });
    clients.push(client);
    const events = new Recorder(client);
    await events.state("reconnecting");
    const first = client.send("room", "one");
    const second = client.send("room", "two");
    expect(client.queued).toBe(2);
    expect(await client.send("room", "three").catch((e) => e)).toMatchObject({ code: "queue_full", temporary: true });
    expect(await client.typing("room", true).catch((e) => e)).toMatchObject({ code: "not_connected" });
    client.close();
    expect(await first.catch((e) => e)).toMatchObject({ code: "closed" });
    expect(await second.catch((e) => e)).toMatchObject({ code: "closed" });
    expect(client.state).toBe("closed");
  });

  test("an invalid connectionId is refused before any connection", () => {
    expect(() => connect(srv.httpUrl, { connectionId: "short" })).toThrow(/connectionId/);
  });
});
