// MAX_CONNECTIONS: at the cap, upgrades get HTTP 503 with Retry-After and readiness turns 503.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rawUpgrade } from "../helpers/http";
import { sample, scrape } from "../helpers/metrics";
import { connId, startTestServer, type TestServer } from "../helpers/server";
import { waitFor } from "../helpers/wait";

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer({ MAX_CONNECTIONS: "2" });
});
afterAll(() => srv.stop());

test("the upgrade past MAX_CONNECTIONS gets 503 with Retry-After; a freed slot is usable again", async () => {
  const first = await srv.connect();
  const second = await srv.connect();
  expect((await fetch(`${srv.httpUrl}/health/ready`)).status).toBe(503);
  expect(await (await fetch(`${srv.httpUrl}/health/ready`)).json()).toMatchObject({
    ready: false,
    reason: "at_capacity",
  });

  const refused = await rawUpgrade(srv.port, `/ws/chat/${connId()}`);
  expect(refused.status).toBe(503);
  expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);
  expect(refused.headers["content-type"]).toContain("application/json");
  expect(JSON.parse(refused.body)).toMatchObject({ error: "over_capacity" });

  // A browser-style client sees the upgrade fail.
  const ws = new WebSocket(srv.wsUrl(connId()));
  const outcome = await new Promise<string>((resolve) => {
    ws.onopen = () => resolve("open");
    ws.onerror = () => resolve("error");
  });
  expect(outcome).toBe("error");
  const metrics = await scrape(srv.httpUrl);
  expect(sample(metrics, "websocket_upgrades_rejected_total", { reason: "capacity" })).toBe(2);
  expect(sample(metrics, "websocket_connections_total")).toBe(2);
  expect(sample(metrics, "websocket_max_connections")).toBe(2);

  // The existing connections keep working.
  expect((await first.request({ type: "ping" })).type).toBe("pong");

  await second.close();
  await waitFor(() => srv.server.registry.size === 1, { what: "the closed connection released" });
  expect((await fetch(`${srv.httpUrl}/health/ready`)).status).toBe(200);
  const third = await srv.connect();
  expect((await third.request({ type: "ping" })).type).toBe("pong");
});
