import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { TestClient } from "../helpers/client";
import { startRedisInstance, waitRedisUp } from "../helpers/cluster";
import { sample, scrape } from "../helpers/metrics";
import { startRedis, type TestRedis } from "../helpers/redis";
import { connId } from "../helpers/server";

let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(() => redis.stop());

async function pair(env: Record<string, string> = {}) {
  const prefix = redis.prefix();
  const a = await startRedisInstance(redis, prefix, env);
  const b = await startRedisInstance(redis, prefix, env);
  await Promise.all([waitRedisUp(a), waitRedisUp(b)]);
  return { prefix, a, b, stop: () => Promise.all([a.stop(), b.stop()]) };
}

describe("two instances through Redis", () => {
  test("a room message reaches members on the other instance once, with dense offsets", async () => {
    const { a, b, stop } = await pair();
    const alice = await TestClient.connect(a.wsUrl(connId(), "user=alice"));
    const bob = await TestClient.connect(b.wsUrl(connId(), "user=bob"));
    await alice.request({ type: "join", room: "lobby" });
    await bob.request({ type: "join", room: "lobby" });
    const first = await alice.request({ type: "message", room: "lobby", text: "one", clientMsgId: "a1" });
    const second = await bob.request({ type: "message", room: "lobby", text: "two", clientMsgId: "b1" });
    expect([first.offset, second.offset]).toEqual([1, 2]);
    for (const client of [alice, bob]) {
      expect((await client.next("message")).offset).toBe(1);
      expect((await client.next("message")).offset).toBe(2);
      await client.expectNone("message", 150);
    }
    // Both messages crossed Redis to both instances: each observed their lag.
    for (const instance of [a, b]) {
      const text = await scrape(instance.httpUrl);
      const count = sample(text, "backplane_lag_seconds_count");
      expect(count).toBeGreaterThanOrEqual(2);
      expect(sample(text, "backplane_lag_seconds_bucket", { le: "+Inf" })).toBe(count);
    }
    await alice.close();
    await bob.close();
    await stop();
  });
});
