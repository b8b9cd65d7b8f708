// Reconnect and resume against real servers: a restarted compiled binary, and network failures
// made by a TCP proxy between the client and an in-process server.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ChatClient, type ConnectOptions, connect } from "../../client/index";
import { freePort, type RunningBinary, startBinary } from "../helpers/binary";
import { connId, startTestServer, type TestServer } from "../helpers/server";
import { Recorder, TcpProxy } from "./support";

const FAST = { minMs: 50, maxMs: 400 };
const clients: ChatClient[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

function open(url: string, user: string, options: Partial<ConnectOptions> = {}) {
  const client = connect(url, { connectionId: connId(user), user, backoff: FAST, ...options });
  clients.push(client);
  return { client, events: new Recorder(client) };
}

describe("server restart", () => {
  let cwd: string;
  let binary: RunningBinary | undefined;
  beforeAll(() => {
    cwd = mkdtempSync(join(tmpdir(), "chat-client-restart-"));
  });
  afterAll(async () => {
    await binary?.stop("SIGTERM");
    rmSync(cwd, { recursive: true, force: true });
  });

  test("messages sent while the server is down are delivered exactly once after it is back", async () => {
    const port = freePort();
    const env = { PORT: String(port), LOG_LEVEL: "error", DRAIN_JITTER_MS: "300", DRAIN_TIMEOUT: "5000" };
    binary = await startBinary({ ...env, INSTANCE_ID: "restart-first" }, { cwd });
    // Bob comes back through a proxy after Alice, so that his queued direct message finds her online
    // and arrives live (the inbox resume would deliver it too, once).
    const bobsLink = new TcpProxy(port);
    const alice = open(binary.httpUrl, "alice");
    const bob = open(`ws://127.0.0.1:${bobsLink.port}`, "bob");
    await Promise.all([alice.events.state("open"), bob.events.state("open")]);
    await alice.client.join("restart");
    await bob.client.join("restart");
    await alice.client.send("restart", "before the restart");
    await bob.events.next("message", (m) => m.text === "before the restart");

    const exited = binary.stop("SIGTERM");
    expect(await alice.events.next("goodbye")).toMatchObject({ reason: "shutdown", reconnect: true });
    await bob.events.next("goodbye");
    expect(await exited).toBe(0);
    await alice.events.state("reconnecting");
    expect(alice.client.state, JSON.stringify(alice.events.all("state"))).toBe("reconnecting");

    // The server is gone: what the users write now waits in their clients.
    const texts = ["while down 1", "while down 2", "while down 3"];
    const sends = texts.map((text) => alice.client.send("restart", text));
    const direct = bob.client.sendDirect("alice", "a direct message while down");
    expect(alice.client.queued).toBe(3);
    expect(bob.client.queued).toBe(1);

    bobsLink.refuse();
    binary = await startBinary({ ...env, INSTANCE_ID: "restart-second" }, { cwd });
    const acks = await Promise.all(sends);
    bobsLink.refuse(false);
    expect(acks.map((a) => a.offset)).toEqual([1, 2, 3]);
    expect((await direct).duplicate).toBe(false);
    expect(alice.client.session).toMatchObject({
      instanceId: "restart-second",
      connectionId: alice.client.connectionId,
    });
    for (const text of texts) await bob.events.next("message", (m) => m.text === text);
    await alice.events.next("direct", (d) => d.text === "a direct message while down");

    // A last message marks the end: everything before it has arrived.
    await bob.client.send("restart", "after the restart");
    await alice.events.next("message", (m) => m.text === "after the restart");
    await bob.events.next("message", (m) => m.text === "after the restart");
    const expected = ["before the restart", ...texts, "after the restart"];
    expect(bob.events.all("message").map((m) => m.text)).toEqual(expected);
    expect(alice.events.all("message").map((m) => m.text)).toEqual(expected);
    expect(alice.events.all("direct").map((d) => d.text)).toEqual(["a direct message while down"]);
    // The restarted server started the room anew; the rejoin caught up with everything it holds.
    expect(bob.events.all("joined").at(-1)).toMatchObject({ room: "restart", rejoin: true, recovered: true });
    // One `reconnecting` event per failed attempt, then open again.
    const states = alice.events.all("state").map((s) => s.state);
    expect(states.filter((s, i) => s !== states[i - 1])).toEqual(["open", "reconnecting", "open"]);
    bobsLink.stop();
  }, 30_000);
});

describe("network failures", () => {
  let srv: TestServer;
  let proxy: TcpProxy;
  beforeAll(async () => {
    srv = await startTestServer();
    proxy = new TcpProxy(srv.port);
  });
  afterAll(async () => {
    proxy.stop();
    await srv.stop();
  });

  test("a message whose answer was lost is sent again and stored once", async () => {
    const alice = open(`ws://127.0.0.1:${proxy.port}`, "alice");
    const bob = open(srv.httpUrl, "bob");
    await Promise.all([alice.events.state("open"), bob.events.state("open")]);
    await alice.client.join("lost-answer");
    await bob.client.join("lost-answer");

    proxy.stall();
    const sending = alice.client.send("lost-answer", "did this arrive?");
    const atBob = await bob.events.next("message", (m) => m.text === "did this arrive?");
    proxy.cut();
    proxy.stall(false);
    await alice.events.next("state", (s) => s.state === "reconnecting" && s.code === 1006);

    const sent = await sending;
    expect(sent).toMatchObject({ id: atBob.id, offset: atBob.offset, duplicate: true });
    expect(alice.client.session?.resumed).toBe(true);
    await alice.client.send("lost-answer", "marker");
    await bob.events.next("message", (m) => m.text === "marker");
    await alice.events.next("message", (m) => m.text === "marker");
    expect(bob.events.all("message").map((m) => m.text)).toEqual(["did this arrive?", "marker"]);
    // Alice never saw her message live; the rejoin replayed it, once.
    expect(alice.events.all("message").map((m) => m.text)).toEqual(["did this arrive?", "marker"]);
  });

  test("messages missed while unreachable are replayed by the rejoin, each once", async () => {
    const alice = open(srv.httpUrl, "alice");
    const bob = open(`ws://127.0.0.1:${proxy.port}`, "bob");
    await Promise.all([alice.events.state("open"), bob.events.state("open")]);
    await alice.client.join("replay");
    await bob.client.join("replay");
    await alice.client.send("replay", "seen live");
    await bob.events.next("message", (m) => m.text === "seen live");

    proxy.refuse();
    proxy.cut();
    await bob.events.next("state", (s) => s.state === "reconnecting");
    await alice.client.send("replay", "missed 1");
    await alice.client.send("replay", "missed 2");
    // Bob keeps retrying and failing until the network is back.
    await bob.events.next("state", (s) => s.state === "reconnecting" && (s.attempt ?? 0) >= 2);
    proxy.refuse(false);

    expect(await bob.events.next("joined", (j) => j.rejoin)).toMatchObject({ room: "replay", recovered: true });
    await bob.events.next("message", (m) => m.text === "missed 2");
    await alice.client.send("replay", "live again");
    await bob.events.next("message", (m) => m.text === "live again");
    expect(bob.events.all("message").map((m) => [m.text, m.offset])).toEqual([
      ["seen live", 1],
      ["missed 1", 2],
      ["missed 2", 3],
      ["live again", 4],
    ]);
    expect(bob.client.joinedRooms[0]).toMatchObject({ room: "replay", offset: 4 });
  });
});
