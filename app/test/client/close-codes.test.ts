// After a close code that says "do not come back" the client stops for good; after the others it
// reconnects. Each code here is produced by the real server, not simulated.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type ChatClient, connect, RECONNECTABLE_CLOSE_CODES } from "../../client/index";
import { TestClient } from "../helpers/client";
import { connId, startTestServer, type TestServer } from "../helpers/server";
import { Recorder, TcpProxy } from "./support";

const BACKOFF = { minMs: 20, maxMs: 50 };
/** Long enough for several reconnect attempts had the client made any. */
const QUIET_WINDOW_MS = 10 * BACKOFF.maxMs;

let srv: TestServer;
let proxy: TcpProxy;
const clients: ChatClient[] = [];
beforeAll(async () => {
  srv = await startTestServer({ MAX_MESSAGE_BYTES: "512", MAX_TEXT_LENGTH: "4000" });
  proxy = new TcpProxy(srv.port);
});
afterAll(async () => {
  for (const c of clients) c.close();
  proxy.stop();
  await srv.stop();
});

async function openThroughProxy(user: string) {
  const client = connect(`ws://127.0.0.1:${proxy.port}`, { connectionId: connId(user), user, backoff: BACKOFF });
  clients.push(client);
  const events = new Recorder(client);
  await events.state("open");
  return { client, events, attemptsBefore: proxy.accepted.length };
}

/** Asserts the client is closed with `code` and opened no connection after it. */
async function expectStopped(c: Awaited<ReturnType<typeof openThroughProxy>>, code: number) {
  const closed = await c.events.next("state", (s) => s.state === "closed");
  expect(closed.code).toBe(code);
  expect(RECONNECTABLE_CLOSE_CODES.has(code)).toBe(false);
  await Bun.sleep(QUIET_WINDOW_MS);
  expect(proxy.accepted.length).toBe(c.attemptsBefore);
  expect(c.client.state).toBe("closed");
  expect(c.events.all("state").filter((s) => s.state === "reconnecting")).toEqual([]);
}

describe("terminal close codes", () => {
  test("4001: another socket took over the connectionId", async () => {
    const c = await openThroughProxy("hank");
    const pending = c.client.send("nowhere", "x").catch((e) => e);
    const other = await TestClient.connect(srv.wsUrl(c.client.connectionId, "user=hank"));
    await expectStopped(c, 4001);
    expect(await pending).toMatchObject({ code: expect.stringMatching(/^(closed|not_in_room)$/) });
    await other.close();
  });

  test("1003: too many invalid frames", async () => {
    const c = await openThroughProxy("ivy");
    const answers = await Promise.all(
      Array.from({ length: 11 }, (_, i) => c.client.join(`not a room ${i}!`).catch((e) => e)),
    );
    expect(answers[0]).toMatchObject({ code: "invalid_frame" });
    await expectStopped(c, 1003);
    // Everything after the close is refused at once, not queued.
    expect(await c.client.send("room", "late").catch((e) => e)).toMatchObject({ code: "closed" });
  });

  test("1009: a frame over the size limit", async () => {
    const c = await openThroughProxy("jack");
    await c.client.join("big");
    const sending = c.client.send("big", "x".repeat(2000)).catch((e) => e);
    await expectStopped(c, 1009);
    expect(await sending).toMatchObject({ code: "closed" });
  });
});

describe("reconnectable close codes", () => {
  test("1006: a dropped network is retried and the room kept", async () => {
    const c = await openThroughProxy("kate");
    await c.client.join("kept");
    proxy.cut();
    expect(await c.events.next("state", (s) => s.state === "reconnecting")).toMatchObject({ code: 1006, attempt: 1 });
    await c.events.next("joined", (j) => j.rejoin && j.room === "kept");
    expect(c.client.state).toBe("open");
    expect(proxy.accepted.length).toBe(c.attemptsBefore + 1);
  });

  test("1012: a server shutting down says goodbye; the client waits retryAfterMs and comes back", async () => {
    const other = await startTestServer({ DRAIN_JITTER_MS: "200" });
    const client = connect(other.httpUrl, { connectionId: connId("liam"), user: "liam", backoff: BACKOFF });
    clients.push(client);
    const events = new Recorder(client);
    await events.state("open");
    const stopping = other.stop();
    const goodbye = await events.next("goodbye");
    const reconnecting = await events.next("state", (s) => s.state === "reconnecting");
    expect(reconnecting).toMatchObject({ code: 1012, delayMs: goodbye.retryAfterMs });
    await stopping;
    expect(client.state).not.toBe("closed");
    client.close();
  });
});
