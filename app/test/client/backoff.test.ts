// Reconnect waits: exponential with full jitter within [minMs, maxMs], measured on real attempts.
import { afterEach, describe, expect, test } from "bun:test";
import { backoffCeiling, backoffDelay, type ChatClient, connect, DEFAULT_BACKOFF } from "../../client/index";
import { connId, startTestServer } from "../helpers/server";
import { Recorder, refusingListener, TcpProxy } from "./support";

const clients: ChatClient[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

describe("backoffDelay", () => {
  test("grows from 1 s and never exceeds 30 s by default", () => {
    const ceilings = Array.from({ length: 8 }, (_, n) => backoffCeiling(n, DEFAULT_BACKOFF));
    expect(ceilings).toEqual([2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000, 30_000]);
    for (let n = 0; n < 50; n++) {
      expect(backoffDelay(n, DEFAULT_BACKOFF, () => 0)).toBe(1_000);
      expect(backoffDelay(n, DEFAULT_BACKOFF, () => 0.999999)).toBeLessThanOrEqual(backoffCeiling(n, DEFAULT_BACKOFF));
    }
    expect(backoffDelay(1_000, DEFAULT_BACKOFF, () => 0.999999)).toBe(30_000);
  });

  test("is spread over the whole window (full jitter), not bunched at its ends", () => {
    const samples = Array.from({ length: 2_000 }, () => backoffDelay(3, DEFAULT_BACKOFF));
    for (const s of samples) {
      expect(s).toBeGreaterThanOrEqual(1_000);
      expect(s).toBeLessThanOrEqual(16_000);
    }
    const quarters = [0, 0, 0, 0];
    for (const s of samples) quarters[Math.min(3, Math.floor(((s - 1_000) / 15_000) * 4))]!++;
    for (const q of quarters) expect(q).toBeGreaterThan(300);
  });
});

describe("measured reconnect attempts", () => {
  test("the gaps between real attempts follow the announced waits, within their bounds", async () => {
    const backoff = { minMs: 40, maxMs: 300 };
    const listener = refusingListener();
    try {
      const client = connect(`ws://127.0.0.1:${listener.port}`, { connectionId: connId("backoff"), backoff });
      clients.push(client);
      const events = new Recorder(client);
      const waits: number[] = [];
      for (let n = 1; n <= 7; n++) waits.push((await events.next("state", (s) => s.attempt === n, 3_000)).delayMs!);
      while (listener.accepted.length < 8) await events.next("state", (s) => s.state === "reconnecting", 3_000);
      client.close();

      const gaps = listener.accepted.slice(1, 8).map((t, i) => t - listener.accepted[i]!);
      for (let i = 0; i < gaps.length; i++) {
        expect(waits[i]!).toBeGreaterThanOrEqual(backoff.minMs);
        expect(waits[i]!).toBeLessThanOrEqual(backoffCeiling(i, backoff));
        // A gap is the wait plus the time to open and fail one TCP connection on loopback.
        expect(gaps[i]!).toBeGreaterThanOrEqual(waits[i]! - 2);
        expect(gaps[i]!).toBeLessThanOrEqual(waits[i]! + 60);
      }
      expect(Math.max(...waits)).toBeLessThanOrEqual(backoff.maxMs);
    } finally {
      listener.stop();
    }
  });

  test("goodbye.retryAfterMs replaces the backoff, measured from the close to the next attempt", async () => {
    const srv = await startTestServer({ DRAIN_JITTER_MS: "600" });
    const proxy = new TcpProxy(srv.port);
    try {
      // A backoff far longer than any retryAfterMs: an attempt in time can only come from the goodbye.
      const client = connect(`ws://127.0.0.1:${proxy.port}`, {
        connectionId: connId("goodbye"),
        backoff: { minMs: 5_000, maxMs: 5_000 },
      });
      clients.push(client);
      const events = new Recorder(client);
      await events.state("open");
      const stopping = srv.stop();
      const goodbye = await events.next("goodbye");
      const closed = await events.nextEntry("state", (s) => s.state === "reconnecting");
      expect(closed.value.delayMs).toBe(goodbye.retryAfterMs);
      while (proxy.accepted.length < 2)
        await events.next("state", (s) => s.state === "reconnecting" && s.attempt === 2, 3_000);
      const gap = proxy.accepted[1]! - closed.at;
      expect(gap).toBeGreaterThanOrEqual(goodbye.retryAfterMs - 2);
      expect(gap).toBeLessThanOrEqual(goodbye.retryAfterMs + 60);
      await stopping;
    } finally {
      proxy.stop();
    }
  });

  test("a successful connection starts the backoff over", async () => {
    const srv = await startTestServer();
    const proxy = new TcpProxy(srv.port);
    try {
      const client = connect(`ws://127.0.0.1:${proxy.port}`, {
        connectionId: connId("reset"),
        backoff: { minMs: 20, maxMs: 200 },
      });
      clients.push(client);
      const events = new Recorder(client);
      await events.state("open");
      proxy.refuse();
      proxy.cut();
      await events.next("state", (s) => s.attempt === 4);
      proxy.refuse(false);
      await events.next("state", (s) => s.state === "open");
      proxy.cut();
      expect(await events.next("state", (s) => s.state === "reconnecting" && s.previous === "open")).toMatchObject({
        attempt: 1,
      });
    } finally {
      proxy.stop();
      await srv.stop();
    }
  });
});
