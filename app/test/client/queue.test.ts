// The queue of messages written while disconnected: bounded by bytes and by time, not by a count a
// deploy's hand-over overflows, and sent at a pace the server's frame rate limit admits.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { type ChatClient, type ConnectOptions, connect } from "../../client/index";
import { connId, startTestServer, type TestServer } from "../helpers/server";
import { Recorder, TcpProxy } from "./support";

const clients: ChatClient[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

/** A client whose server never answers (nothing listens on port 9): everything it sends waits. */
function offline(options: Partial<ConnectOptions> = {}) {
  const client = connect("ws://127.0.0.1:9", {
    connectionId: connId("queue"),
    backoff: { minMs: 60_000, maxMs: 60_000 },
    ...options,
  });
  clients.push(client);
  return { client, events: new Recorder(client) };
}

describe("while disconnected", () => {
  test("a minute of messages every 200 ms waits in the queue by default", async () => {
    const { client, events } = offline();
    await events.state("reconnecting");
    // 300 messages: three times the count that used to fill the queue during a slow deploy.
    const sends = Array.from({ length: 300 }, (_, i) => client.send("lobby", `message ${i}`));
    expect(client.queued).toBe(300);
    const frameBytes = JSON.stringify({ type: "message", room: "lobby", text: "message 100", clientMsgId: "m" }).length;
    expect(client.queuedBytes).toBeGreaterThan(300 * frameBytes);
    expect(events.all("queue").at(-1)).toEqual({ messages: 300, bytes: client.queuedBytes });
    client.close();
    const outcomes = await Promise.all(sends.map((s) => s.catch((e) => e.code)));
    expect(new Set(outcomes)).toEqual(new Set(["closed"]));
    expect(events.all("queue").at(-1)).toEqual({ messages: 0, bytes: 0 });
  });

  test("the queue is bounded by bytes: a send past maxQueueBytes is refused with queue_full", async () => {
    const { client, events } = offline({ maxQueueBytes: 1_000 });
    await events.state("reconnecting");
    const text = "x".repeat(200);
    const sends: Promise<unknown>[] = [];
    // The queue takes a message synchronously, or the send is refused.
    while (sends.length === client.queued) sends.push(client.send("lobby", text).catch((e) => e));
    expect(await sends.at(-1)).toMatchObject({ code: "queue_full", temporary: true });
    // Each frame is about 290 bytes (the text, the room, a 33-character clientMsgId): three fit.
    expect(client.queued).toBe(3);
    expect(client.queuedBytes).toBeLessThanOrEqual(1_000);
    // Multi-byte characters count as the bytes they take on the wire.
    const { client: other, events: otherEvents } = offline({ maxQueueBytes: 1_000 });
    await otherEvents.state("reconnecting");
    void other.send("lobby", "é".repeat(200)).catch(() => {});
    expect(other.queuedBytes).toBeGreaterThan(400);
  });

  test("a message that waits longer than queueTimeoutMs is refused with queue_timeout and leaves the queue", async () => {
    const { client, events } = offline({ queueTimeoutMs: 300 });
    await events.state("reconnecting");
    const started = performance.now();
    const error = await client.send("lobby", "too late").catch((e) => e);
    expect(error).toMatchObject({ code: "queue_timeout", temporary: true });
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    expect(client.queued).toBe(0);
    expect(events.all("queue").map((q) => q.messages)).toEqual([1, 0]);
  });
});

describe("after a long hand-over", () => {
  let srv: TestServer;
  let proxy: TcpProxy;
  beforeAll(async () => {
    // The server's default frame rate limit, which a burst of the whole queue would run into.
    srv = await startTestServer({ FRAME_RATE: "20", FRAME_BURST: "40" });
    proxy = new TcpProxy(srv.port);
  });
  afterAll(async () => {
    proxy.stop();
    await srv.stop();
  });

  test("150 queued messages reach a rate-limited server in order, each once, none refused", async () => {
    const alice = connect(`ws://127.0.0.1:${proxy.port}`, {
      connectionId: connId("alice"),
      user: "alice",
      backoff: { minMs: 50, maxMs: 200 },
    });
    const bob = connect(srv.httpUrl, { connectionId: connId("bob"), user: "bob" });
    clients.push(alice, bob);
    const aliceEvents = new Recorder(alice);
    const bobEvents = new Recorder(bob);
    await Promise.all([aliceEvents.state("open"), bobEvents.state("open")]);
    await alice.join("handover");
    await bob.join("handover");

    proxy.refuse();
    proxy.cut();
    await aliceEvents.state("reconnecting");
    const texts = Array.from({ length: 150 }, (_, i) => `queued ${i}`);
    const sends = texts.map((text) => alice.send("handover", text));
    expect(alice.queued).toBe(150);
    proxy.refuse(false);

    await aliceEvents.state("open", 5_000);
    // Written while the queue drains: it goes out behind the queued ones, not before them.
    const late = alice.send("handover", "written after the reconnect");
    const acks = await Promise.all([...sends, late]);
    expect(acks.map((a) => a.offset)).toEqual(Array.from({ length: 151 }, (_, i) => i + 1));
    expect(acks.filter((a) => a.duplicate)).toEqual([]);
    await bobEvents.next("message", (m) => m.text === "written after the reconnect", 5_000);
    expect(bobEvents.all("message").map((m) => m.text)).toEqual([...texts, "written after the reconnect"]);
    expect(aliceEvents.all("error")).toEqual([]);
    expect(alice.state).toBe("open");
  }, 30_000);
});

describe("against a server with stricter limits than the queue's pace", () => {
  let srv: TestServer;
  let proxy: TcpProxy;
  beforeAll(async () => {
    // 5 frames/s, burst 10: the queue's burst of 30 runs into refusals.
    srv = await startTestServer({ FRAME_RATE: "5", FRAME_BURST: "10" });
    proxy = new TcpProxy(srv.port);
  });
  afterAll(async () => {
    proxy.stop();
    await srv.stop();
  });

  test("the queue paces itself under the limit the server announces: 40 queued, none refused, in order", async () => {
    const alice = connect(`ws://127.0.0.1:${proxy.port}`, {
      connectionId: connId("paced"),
      user: "paced",
      backoff: { minMs: 50, maxMs: 200 },
    });
    clients.push(alice);
    const events = new Recorder(alice);
    await events.state("open");
    await alice.join("paced");
    const refusedBefore = await frameRefusals(srv);
    proxy.refuse();
    proxy.cut();
    await events.state("reconnecting");
    const texts = Array.from({ length: 40 }, (_, i) => `paced ${i}`);
    const sends = texts.map((text) => alice.send("paced", text));
    proxy.refuse(false);

    const acks = await Promise.all(sends);
    const first = acks[0]!.offset;
    expect(acks.map((a) => a.offset)).toEqual(texts.map((_, i) => first + i));
    expect(await frameRefusals(srv)).toBe(refusedBefore);
    expect(events.all("error")).toEqual([]);
  }, 30_000);

  test("refused messages wait and are sent again: each stored once, the connection kept", async () => {
    const alice = connect(`ws://127.0.0.1:${proxy.port}`, {
      connectionId: connId("alice"),
      user: "alice",
      backoff: { minMs: 50, maxMs: 200 },
      // Faster than the server allows, as a client configured for other limits would be.
      queueRate: { perSecond: 15, burst: 30 },
    });
    clients.push(alice);
    const events = new Recorder(alice);
    await events.state("open");
    await alice.join("strict");
    proxy.refuse();
    proxy.cut();
    await events.state("reconnecting");
    const texts = Array.from({ length: 40 }, (_, i) => `strict ${i}`);
    const sends = texts.map((text) => alice.send("strict", text));
    proxy.refuse(false);

    const acks = await Promise.all(sends);
    expect(new Set(acks.map((a) => a.offset)).size).toBe(40);
    expect(acks.filter((a) => a.duplicate)).toEqual([]);
    const stored = await alice.history("strict", { limit: 100 });
    expect(stored.messages.map((m) => m.text).sort()).toEqual([...texts].sort());
    // Never closed: at most 10 queued messages were on the wire, so refusals never ran past FRAME_BURST.
    expect(events.all("state").filter((s) => s.state === "closed")).toEqual([]);
    expect(events.all("error")).toEqual([]);
  }, 30_000);
});

/** `rate_limited` answers to frames (not upgrades) the server has given so far. */
async function frameRefusals(server: TestServer): Promise<number> {
  const text = await (await fetch(`${server.httpUrl}/metrics`)).text();
  return Number(/^websocket_rate_limited_total\{limit="frames"\} (\d+)/m.exec(text)?.[1] ?? 0);
}
