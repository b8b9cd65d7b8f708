// Heartbeats: a `heartbeat` frame and a WebSocket ping every HEARTBEAT_INTERVAL; a client silent past
// interval + PONG_TIMEOUT is closed with 4000 and released; one that only answers pings is closed
// after CONNECTION_TIMEOUT with 4002.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { TestClient } from "../helpers/client";
import { sample, scrape } from "../helpers/metrics";
import { connId, startTestServer, type TestServer } from "../helpers/server";
import { waitFor } from "../helpers/wait";

const INTERVAL = 200;
const PONG_TIMEOUT = 200;

describe("without an idle limit", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer({
      HEARTBEAT_INTERVAL: String(INTERVAL),
      PONG_TIMEOUT: String(PONG_TIMEOUT),
      CONNECTION_TIMEOUT: "0",
    });
  });
  afterAll(() => srv.stop());

  test("connection_established announces the interval; heartbeat frames and pings follow it", async () => {
    const client = await TestClient.connectWithoutPong(srv.wsUrl(connId()));
    const opened = Date.now();
    const first = await client.next("heartbeat", 2000);
    expect(first.ts).toBeGreaterThanOrEqual(opened);
    await waitFor(() => client.pings() >= 1, { what: "a WebSocket ping" });
    client.close();
  });

  test("a client that stops answering pings is closed with 4000 and everything it held is released", async () => {
    const watcher = await srv.connect(connId(), "user=watcher");
    await watcher.request({ type: "join", room: "hb-room" });
    const before = await scrape(srv.httpUrl);

    const silent = await TestClient.connectWithoutPong(srv.wsUrl(connId(), "user=silent"));
    // Taken before the client's last frame, so the server saw it no earlier than this.
    const lastFrame = Date.now();
    await silent.request({ type: "join", room: "hb-room" });
    expect(await watcher.next((f) => f.type === "presence_diff" && f.joins.includes("silent"))).toBeTruthy();

    const closed = await silent.closed;
    expect(closed.code).toBe(4000);
    // Not before the silence limit: interval + PONG_TIMEOUT after the last thing it sent.
    expect(Date.now() - lastFrame).toBeGreaterThanOrEqual(INTERVAL + PONG_TIMEOUT);
    expect(silent.pings()).toBeGreaterThanOrEqual(1);

    expect(await watcher.next((f) => f.type === "presence_diff" && f.leaves.length > 0, 2000)).toEqual({
      type: "presence_diff",
      room: "hb-room",
      joins: [],
      leaves: ["silent"],
    });
    expect((await watcher.request({ type: "presence", room: "hb-room" })).members).toEqual(["watcher"]);
    await waitFor(() => srv.server.registry.size === 1, { what: "the silent connection released" });
    const after = await scrape(srv.httpUrl);
    expect(sample(after, "websocket_connections_total")).toBe(1);
    expect(
      sample(after, "websocket_disconnects_total", { code: "4000" }) -
        sample(before, "websocket_disconnects_total", { code: "4000" }),
    ).toBe(1);
  });

  test("a client that answers pings stays open across many intervals without sending a frame", async () => {
    const client = await srv.connect();
    for (let i = 0; i < 4; i++) await client.next("heartbeat", 2000);
    expect(client.ws.readyState).toBe(WebSocket.OPEN);
    expect((await client.request({ type: "ping" })).type).toBe("pong");
  });

  test("frames count as signs of life for a client that never answers pings", async () => {
    const client = await TestClient.connectWithoutPong(srv.wsUrl(connId()));
    const until = Date.now() + 3 * (INTERVAL + PONG_TIMEOUT);
    while (Date.now() < until) {
      await client.next("heartbeat", 2000);
      expect((await client.request({ type: "ping" })).type).toBe("pong");
    }
    client.close();
  });
});

describe("with CONNECTION_TIMEOUT", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer({
      HEARTBEAT_INTERVAL: String(INTERVAL),
      PONG_TIMEOUT: String(PONG_TIMEOUT),
      CONNECTION_TIMEOUT: "800",
    });
  });
  afterAll(() => srv.stop());

  test("a client that answers pings but sends no frame is closed with 4002", async () => {
    const client = await srv.connect(connId(), "user=idler");
    const lastFrame = Date.now();
    await client.request({ type: "join", room: "idle-room" });
    expect((await client.closed).code).toBe(4002);
    expect(Date.now() - lastFrame).toBeGreaterThanOrEqual(800);
    // It answered pings throughout: heartbeats kept coming until the idle limit.
    expect(client.all("heartbeat").length).toBeGreaterThanOrEqual(2);
    await waitFor(() => srv.server.registry.size === 0, { what: "the idle connection released" });
    expect(sample(await scrape(srv.httpUrl), "websocket_disconnects_total", { code: "4002" })).toBe(1);
  });
});
