import { describe, expect, test } from "bun:test";
import { TestClient } from "../helpers/client";
import { upgrade } from "../helpers/http";
import { connId, startTestServer } from "../helpers/server";

async function metric(httpUrl: string, pattern: RegExp) {
  const text = await (await fetch(`${httpUrl}/metrics`)).text();
  return Number(pattern.exec(text)?.[1] ?? 0);
}

describe("connection attempts per client IP", () => {
  test("a burst is allowed, then attempts pass at the refill rate, with 429 and Retry-After between", async () => {
    const srv = await startTestServer({ CONNECT_RATE_PER_IP: "2", CONNECT_BURST_PER_IP: "3" });
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await upgrade(srv.wsUrl(connId()))).status);
    expect(statuses).toEqual([101, 101, 101, 429]);
    const refused = await upgrade(srv.wsUrl(connId()));
    expect(refused).toMatchObject({ status: 429, body: { error: "rate_limited" } });
    expect(Number(refused.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    // 2 per second: one token every 500 ms. After 600 ms exactly one more attempt gets through.
    await Bun.sleep(600);
    expect((await upgrade(srv.wsUrl(connId()))).status).toBe(101);
    expect((await upgrade(srv.wsUrl(connId()))).status).toBe(429);
    // A long pause refills the bucket to its burst, not beyond.
    await Bun.sleep(2000);
    const after: number[] = [];
    for (let i = 0; i < 6; i++) after.push((await upgrade(srv.wsUrl(connId()))).status);
    expect(after.filter((s) => s === 101).length).toBe(3);
    expect(await metric(srv.httpUrl, /^websocket_rate_limited_total\{limit="ip"\} (\d+)/m)).toBeGreaterThanOrEqual(5);
    await srv.stop();
  });

  test("X-Forwarded-For counts only from a trusted proxy", async () => {
    const trusting = await startTestServer({
      CONNECT_RATE_PER_IP: "1",
      CONNECT_BURST_PER_IP: "1",
      TRUSTED_PROXIES: "127.0.0.1",
    });
    expect((await upgrade(trusting.wsUrl(connId()), { "X-Forwarded-For": "203.0.113.7" })).status).toBe(101);
    expect((await upgrade(trusting.wsUrl(connId()), { "X-Forwarded-For": "203.0.113.8" })).status).toBe(101);
    expect((await upgrade(trusting.wsUrl(connId()), { "X-Forwarded-For": "203.0.113.7" })).status).toBe(429);
    const wary = await startTestServer({ CONNECT_RATE_PER_IP: "1", CONNECT_BURST_PER_IP: "1" });
    expect((await upgrade(wary.wsUrl(connId()), { "X-Forwarded-For": "203.0.113.7" })).status).toBe(101);
    // A spoofed header from an untrusted peer does not buy a new bucket.
    expect((await upgrade(wary.wsUrl(connId()), { "X-Forwarded-For": "198.51.100.1" })).status).toBe(429);
    await Promise.all([trusting.stop(), wary.stop()]);
  });
});

describe("per user and per connection", () => {
  test("a user may hold MAX_CONNECTIONS_PER_USER connections; rooms per connection are capped", async () => {
    const srv = await startTestServer({ MAX_CONNECTIONS_PER_USER: "2", MAX_ROOMS_PER_CONNECTION: "2" });
    const a = await TestClient.connect(srv.wsUrl(connId(), "user=greedy"));
    const b = await TestClient.connect(srv.wsUrl(connId(), "user=greedy"));
    expect(await upgrade(srv.wsUrl(connId(), "user=greedy"))).toMatchObject({
      status: 429,
      body: { error: "too_many_connections" },
    });
    await b.close();
    const deadline = Date.now() + 2000;
    while ((await upgrade(srv.wsUrl(connId(), "user=greedy"))).status !== 101 && Date.now() < deadline)
      await Bun.sleep(20);
    expect(await a.request({ type: "join", room: "r1" })).toMatchObject({ type: "message_response" });
    expect(await a.request({ type: "join", room: "r2" })).toMatchObject({ type: "message_response" });
    expect(await a.request({ type: "join", room: "r3" })).toMatchObject({ type: "error", code: "too_many_rooms" });
    await a.close();
    await srv.stop();
  });

  test("frames beyond the rate get rate_limited and refill at FRAME_RATE; a client that keeps flooding is closed with 1008", async () => {
    const srv = await startTestServer({ FRAME_RATE: "4", FRAME_BURST: "5" });
    const c = await TestClient.connect(srv.wsUrl(connId()));
    for (let i = 0; i < 6; i++) c.send({ type: "ping", ref: `p${i}` });
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push(await c.next((f) => f.ref === `p${i}`));
    expect(answers.map((a) => a.type)).toEqual(["pong", "pong", "pong", "pong", "pong", "error"]);
    expect(answers[5]).toMatchObject({ code: "rate_limited", temporary: true });
    // 4 per second: after 300 ms one frame is allowed again, the next is not.
    await Bun.sleep(300);
    expect((await c.request({ type: "ping" })).type).toBe("pong");
    expect((await c.request({ type: "ping" })).code).toBe("rate_limited");
    for (let i = 0; i < 50; i++) c.send({ type: "ping" });
    expect((await c.closed).code).toBe(1008);
    expect(await metric(srv.httpUrl, /^websocket_rate_limited_total\{limit="frames"\} (\d+)/m)).toBeGreaterThanOrEqual(
      7,
    );
    await srv.stop();
  });
});

describe("HTTP hardening", () => {
  test("responses carry security headers; oversized bodies are refused; errors expose no internals", async () => {
    const srv = await startTestServer({ ADMIN_TOKEN: "admin-token", MAX_REQUEST_BODY_BYTES: "2048" });
    for (const path of ["/", "/health", "/nope"]) {
      const res = await fetch(`${srv.httpUrl}${path}`);
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(res.headers.get("x-frame-options")).toBe("DENY");
      expect(res.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
    }
    const big = await fetch(`${srv.httpUrl}/admin/broadcast`, {
      method: "POST",
      headers: { authorization: "Bearer admin-token", "content-type": "application/json" },
      body: JSON.stringify({ text: "x".repeat(10_000) }),
    });
    expect(big.status).toBe(413);
    const bad = await fetch(`${srv.httpUrl}/admin/broadcast`, {
      method: "POST",
      headers: { authorization: "Bearer admin-token", "content-type": "application/json" },
      body: "{not json",
    });
    expect(bad.status).toBe(400);
    const body = await bad.text();
    expect(JSON.parse(body)).toHaveProperty("error");
    expect(body).not.toMatch(/at .*\.ts|node_modules|stack/i);
    await srv.stop();
  });
});
