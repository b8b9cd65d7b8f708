import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { freePort, startBinary } from "../helpers/binary";
import { TestClient } from "../helpers/client";
import { startRedisInstance, waitRedisUp } from "../helpers/cluster";
import { startRedis, type TestRedis } from "../helpers/redis";
import { connId } from "../helpers/server";
import { waitFor } from "../helpers/wait";

let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(() => redis.stop());

async function health(url: string) {
  return (await (await fetch(`${url}/health`)).json()) as Record<string, unknown>;
}

describe("failures", () => {
  test("an instance killed with SIGKILL leaves presence within PRESENCE_TTL", async () => {
    const prefix = redis.prefix();
    const env = { PRESENCE_TTL: "3" };
    const doomed = await startBinary({ REDIS_URL: redis.url, REDIS_KEY_PREFIX: prefix, INSTANCE_ID: "doomed", ...env });
    const survivor = await startRedisInstance(redis, prefix, env);
    await waitRedisUp(survivor);
    const watcher = await TestClient.connect(survivor.wsUrl(connId(), "user=watcher"));
    await watcher.request({ type: "join", room: "vigil" });
    const ghost = await TestClient.connect(`ws://127.0.0.1:${doomed.port}/ws/chat/${connId()}?user=ghost`);
    await ghost.request({ type: "join", room: "vigil" });
    await watcher.next((f) => f.type === "presence_diff" && f.joins.includes("ghost"));

    const killedAt = Date.now();
    doomed.proc.kill("SIGKILL");
    await doomed.proc.exited;
    const left = await watcher.next((f) => f.type === "presence_diff" && f.leaves.includes("ghost"), 6000);
    const elapsed = Date.now() - killedAt;
    expect(left.joins).toEqual([]);
    expect(elapsed).toBeLessThanOrEqual(3000);
    expect((await watcher.request({ type: "presence", room: "vigil" })).members).toEqual(["watcher"]);
    await watcher.close();
    await survivor.stop();
  }, 20_000);

  test("Redis killed and restarted: no crash, room messages refused meanwhile, typing stays local, delivery across instances resumes, no stored message lost", async () => {
    const prefix = redis.prefix();
    const a = await startRedisInstance(redis, prefix);
    const b = await startRedisInstance(redis, prefix);
    await Promise.all([waitRedisUp(a), waitRedisUp(b)]);
    const alice = await TestClient.connect(a.wsUrl(connId(), "user=alice"));
    const amy = await TestClient.connect(a.wsUrl(connId(), "user=amy"));
    const bob = await TestClient.connect(b.wsUrl(connId(), "user=bob"));
    for (const c of [alice, amy, bob]) await c.request({ type: "join", room: "storm" });
    const stored = [];
    for (let i = 1; i <= 3; i++)
      stored.push(await alice.request({ type: "message", room: "storm", text: `kept ${i}`, clientMsgId: `k${i}` }));
    for (let i = 0; i < 3; i++) await bob.next("message");

    await redis.kill();
    const down = Date.now();
    while ((await health(a.httpUrl)).redis !== "down") {
      if (Date.now() - down > 5000) throw new Error("instance never noticed Redis down");
      await Bun.sleep(20);
    }
    expect(await health(a.httpUrl)).toMatchObject({ status: "degraded", redis: "down" });
    expect((await fetch(`${a.httpUrl}/health/ready`)).status).toBe(200);
    // A room message is not acknowledged while it cannot be stored in the shared history: the
    // client keeps it and sends it again with the same clientMsgId.
    const refused = await alice.request({ type: "message", room: "storm", text: "during outage", clientMsgId: "o1" });
    expect(refused).toMatchObject({ type: "error", code: "unavailable", temporary: true });
    // Typing is ephemeral: it still reaches the members on the same instance.
    await alice.request({ type: "typing", room: "storm", active: true });
    expect(await amy.next("typing")).toMatchObject({ room: "storm", from: "alice", active: true });
    // What could not cross to other instances during the outage is dropped and counted, not queued.
    const outage = await (await fetch(`${a.httpUrl}/metrics`)).text();
    expect(Number(/^backplane_dropped_total (\d+)/m.exec(outage)?.[1])).toBeGreaterThanOrEqual(1);
    expect(Number(/^store_unavailable_total\{store="history"\} (\d+)/m.exec(outage)?.[1])).toBeGreaterThanOrEqual(1);

    await redis.restart();
    await Promise.all([waitRedisUp(a), waitRedisUp(b)]);
    // The refused message, sent again with its clientMsgId, is stored once and reaches every member.
    const resent = await alice.request({ type: "message", room: "storm", text: "during outage", clientMsgId: "o1" });
    expect(resent).toMatchObject({ type: "message_response", offset: 4 });
    expect((await bob.next((f) => f.type === "message" && f.text === "during outage", 5000)).id).toBe(resent.id);
    expect((await amy.next((f) => f.type === "message" && f.text === "during outage", 5000)).id).toBe(resent.id);
    // Subscriptions are restored: delivery across instances resumes.
    const after = await alice.request({ type: "message", room: "storm", text: "after restart", clientMsgId: "r1" });
    expect((await bob.next((f) => f.type === "message" && f.text === "after restart", 5000)).id).toBe(after.id);
    // Nothing that was stored before the crash is lost.
    const history = await bob.request({ type: "history", room: "storm", limit: 100 });
    const texts = history.messages.map((m: { text: string }) => m.text);
    for (const m of stored) expect(history.messages.some((h: { id: string }) => h.id === m.id)).toBe(true);
    expect(texts).toContain("after restart");
    const metrics = await (await fetch(`${a.httpUrl}/metrics`)).text();
    expect(Number(/^backplane_reconnects_total (\d+)/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
    await Promise.all([alice.close(), amy.close(), bob.close()]);
    await Promise.all([a.stop(), b.stop()]);
  }, 30_000);

  test("Redis down at start: the server starts degraded, warns with the address (never the password), refuses room traffic, and is ready unless REDIS_REQUIRED", async () => {
    const port = freePort();
    const nowhere = `redis://:hunter2-secret@127.0.0.1:${port}`;
    const relaxed = await startBinary({ REDIS_URL: nowhere });
    const strict = await startBinary({ REDIS_URL: nowhere, REDIS_REQUIRED: "true" });
    expect(await health(relaxed.httpUrl)).toMatchObject({ status: "degraded", redis: "down" });
    expect((await fetch(`${relaxed.httpUrl}/health/ready`)).status).toBe(200);
    const strictReady = await fetch(`${strict.httpUrl}/health/ready`);
    expect(strictReady.status).toBe(503);
    expect(await strictReady.json()).toMatchObject({ ready: false, reason: "redis_down" });
    const one = await TestClient.connect(`ws://127.0.0.1:${relaxed.port}/ws/chat/${connId()}?user=one`);
    // Joining needs the room's place in the shared history: refused as temporary, not half done.
    expect(await one.request({ type: "join", room: "local" })).toMatchObject({
      type: "error",
      code: "unavailable",
      temporary: true,
    });
    expect(await one.request({ type: "typing", room: "local", active: true })).toMatchObject({ code: "not_in_room" });
    await one.close();
    // Several failed connection attempts (ioredis retries every 2 s at most), one warning.
    const failures = async () => {
      const text = await (await fetch(`${relaxed.httpUrl}/metrics`)).text();
      return Number(/^backplane_errors_total\{op="connection"\} (\d+)/m.exec(text)?.[1] ?? 0);
    };
    await waitFor(async () => (await failures()) >= 8, { timeoutMs: 10_000, what: "8 failed connection attempts" });
    const warnings = relaxed
      .output()
      .split("\n")
      .filter((line) => line.includes("redis unreachable"));
    expect(warnings.length).toBe(1);
    expect(JSON.parse(warnings[0]!)).toMatchObject({ level: "warn", address: `127.0.0.1:${port}` });
    expect(relaxed.output()).not.toContain("hunter2-secret");
    expect(await relaxed.stop()).toBe(0);
    expect(await strict.stop()).toBe(0);
  }, 30_000);
});
