// The goodbye delays of a drain: clients behind one address come back no faster than the
// per-address upgrade limit admits, whatever the jitter; different addresses do not wait for each
// other; without a limit the delays are the plain jitter.
import { describe, expect, test } from "bun:test";
import { paceReconnects, planGoodbyes } from "../../src/connections/drain-pacing";

/** A seeded generator, so a failure can be replayed. */
function seeded(seed: number) {
  return () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
}

/** Whether a token bucket of `rate`/s holding `burst` admits every arrival (ms), none refused. */
function admitsAll(arrivals: number[], rate: number, burst: number): boolean {
  let tokens = burst;
  let last = 0;
  for (const at of [...arrivals].sort((a, b) => a - b)) {
    tokens = Math.min(burst, tokens + ((at - last) / 1000) * rate);
    last = at;
    if (tokens < 1 - 1e-9) return false;
    tokens -= 1;
  }
  return true;
}

const pacing = { ratePerIp: 25, burstPerIp: 50, jitterMs: 5000, windowMs: 15_000 };

describe("paceReconnects", () => {
  test("200 clients behind one address: a bucket of the same size admits all of them, in about (200 - 25) / 25 s", () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const { delays, compressed } = paceReconnects(Array(200).fill("203.0.113.7"), {
        ...pacing,
        random: seeded(seed),
      });
      expect(compressed).toBe(0);
      expect(admitsAll(delays, pacing.ratePerIp, pacing.burstPerIp)).toBe(true);
      expect(Math.max(...delays)).toBeGreaterThan(6960);
      expect(Math.max(...delays)).toBeLessThanOrEqual(7000);
    }
  });

  test("the same clients with the plain jitter of DRAIN_JITTER_MS: the bucket refuses some", () => {
    const random = seeded(1);
    const jitterOnly = Array.from({ length: 200 }, () => Math.floor(random() * pacing.jitterMs));
    expect(admitsAll(jitterOnly, pacing.ratePerIp, pacing.burstPerIp)).toBe(false);
  });

  test("clients on addresses of their own keep the plain jitter", () => {
    const addresses = Array.from({ length: 100 }, (_, i) => `198.51.100.${i}`);
    const a = paceReconnects(addresses, { ...pacing, random: seeded(9) }).delays;
    const random = seeded(9);
    expect(a).toEqual(addresses.map(() => Math.floor(random() * pacing.jitterMs)));
  });

  test("more clients than fit into the window: compressed into it, and counted", () => {
    const { delays, compressed } = paceReconnects(Array(1000).fill("203.0.113.7"), { ...pacing, random: seeded(3) });
    expect(compressed).toBe(1);
    expect(Math.max(...delays)).toBeLessThanOrEqual(pacing.windowMs);
  });
});

describe("planGoodbyes", () => {
  test("ordered by delay; no limit configured: the jitter alone, below DRAIN_JITTER_MS, even behind one address", () => {
    const connections = Array.from({ length: 50 }, (_, i) => ({ clientIp: "203.0.113.7", id: i }));
    const { goodbyes } = planGoodbyes(connections, { drainTimeoutMs: 30_000, drainJitterMs: 1000 }, seeded(5));
    const delays = goodbyes.map((g) => g.retryAfterMs);
    expect(delays).toEqual([...delays].sort((a, b) => a - b));
    expect(Math.max(...delays)).toBeLessThan(1000);
    expect(new Set(goodbyes.map((g) => g.connection.id)).size).toBe(50);
  });
});
