// /metrics: open to loopback without METRICS_TOKEN; with it, only the bearer gets in.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../helpers/server";

describe("without METRICS_TOKEN", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer({ COLOR: "blue", INSTANCE_ID: "metrics-open", APP_VERSION: "3.4.5" });
  });
  afterAll(() => srv.stop());

  test("a loopback client reads Prometheus text with the server's metrics and default metrics", async () => {
    const res = await fetch(`${srv.httpUrl}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/plain");
    const text = await res.text();
    for (const name of [
      "websocket_connections_total",
      "websocket_messages_total",
      "websocket_message_latency_seconds",
      "websocket_connection_duration_seconds",
      "websocket_errors_total",
      "websocket_disconnects_total",
      "websocket_max_connections",
      "process_cpu_seconds_total",
    ]) {
      expect(text).toContain(`# TYPE ${name} `);
    }
    expect(text).toContain('app_info{version="3.4.5",color="blue",instance="metrics-open"} 1');
  });
});

describe("with METRICS_TOKEN", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer({ METRICS_TOKEN: "s3cret-token" });
  });
  afterAll(() => srv.stop());

  test("no token or a wrong one gets 401 JSON with a Bearer challenge", async () => {
    for (const authorization of [
      undefined,
      "Bearer wrong",
      "Bearer s3cret-token-longer",
      "Basic czNjcmV0LXRva2Vu",
      "s3cret-token",
    ]) {
      const res = await fetch(`${srv.httpUrl}/metrics`, { headers: authorization ? { authorization } : {} });
      expect(res.status, String(authorization)).toBe(401);
      expect(res.headers.get("www-authenticate")).toBe("Bearer");
      expect(await res.json()).toMatchObject({ error: "unauthorized" });
    }
  });

  test("the bearer token gets 200 and the metrics", async () => {
    const res = await fetch(`${srv.httpUrl}/metrics`, { headers: { authorization: "Bearer s3cret-token" } });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain("websocket_connections_total");
  });
});
