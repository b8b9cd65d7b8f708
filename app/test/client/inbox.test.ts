// The client library and the direct-message inbox, against a real server: direct messages sent
// while the client was unreachable are emitted once when it reconnects, and a position kept by the
// application (a reloaded page) resumes from where it was.
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { type ChatClient, type ConnectOptions, connect } from "../../client/index";
import { connId, startTestServer, type TestServer } from "../helpers/server";
import { Recorder, TcpProxy } from "./support";

const FAST = { minMs: 50, maxMs: 400 };
const clients: ChatClient[] = [];
let srv: TestServer;
let proxy: TcpProxy;
beforeAll(async () => {
  srv = await startTestServer();
  proxy = new TcpProxy(srv.port);
});
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});
afterAll(async () => {
  proxy.stop();
  await srv.stop();
});

function open(url: string, user: string, options: Partial<ConnectOptions> = {}) {
  const client = connect(url, { connectionId: connId(user), user, backoff: FAST, ...options });
  clients.push(client);
  return { client, events: new Recorder(client) };
}

test("direct messages sent while the client was unreachable are emitted once after it reconnects", async () => {
  const alice = open(srv.httpUrl, "in-alice");
  const bob = open(`ws://127.0.0.1:${proxy.port}`, "in-bob");
  const first = await bob.events.next("inbox");
  expect(first).toMatchObject({ offset: 0, recovered: true });
  await alice.events.state("open");
  await alice.client.sendDirect("in-bob", "seen live");
  await bob.events.next("direct", (d) => d.text === "seen live");
  expect(bob.client.inboxPosition).toEqual({ epoch: first.epoch, offset: 1 });

  proxy.refuse();
  proxy.cut();
  await bob.events.next("state", (s) => s.state === "reconnecting");
  await alice.client.sendDirect("in-bob", "missed 1");
  await alice.client.sendDirect("in-bob", "missed 2");
  await bob.events.next("state", (s) => s.state === "reconnecting" && (s.attempt ?? 0) >= 2);
  proxy.refuse(false);

  expect(await bob.events.next("inbox")).toMatchObject({ epoch: first.epoch, offset: 3, recovered: true });
  await alice.client.sendDirect("in-bob", "live again");
  await bob.events.next("direct", (d) => d.text === "live again");
  expect(bob.events.all("direct").map((d) => [d.text, d.offset])).toEqual([
    ["seen live", 1],
    ["missed 1", 2],
    ["missed 2", 3],
    ["live again", 4],
  ]);
  expect(bob.client.inboxPosition).toEqual({ epoch: first.epoch, offset: 4 });
});

test("a position kept by the application resumes after it; without one every kept message comes", async () => {
  const alice = open(srv.httpUrl, "kp-alice");
  await alice.events.state("open");
  for (let i = 1; i <= 3; i++) await alice.client.sendDirect("kp-bob", `m${i}`);
  const fresh = open(srv.httpUrl, "kp-bob");
  const all = await fresh.events.next("inbox");
  expect(all).toMatchObject({ offset: 3, recovered: true });
  expect(fresh.events.all("direct").map((d) => d.text)).toEqual(["m1", "m2", "m3"]);

  const reloaded = open(srv.httpUrl, "kp-bob", { inbox: { epoch: all.epoch, offset: 2 } });
  expect(await reloaded.events.next("inbox")).toMatchObject({ offset: 3, recovered: true });
  expect(reloaded.events.all("direct").map((d) => d.text)).toEqual(["m3"]);
});
