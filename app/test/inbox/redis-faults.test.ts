// Inboxes on Redis failing under two running instances: a direct message sent while Redis is down
// is refused with `unavailable` (never acknowledged and lost), its resend once Redis is back is kept
// once; an inbox whose keys are gone starts a new epoch and a client of the old one is told so.
import { afterAll, expect, test } from "bun:test";
import { startRedisInstance, waitRedisUp } from "../helpers/cluster";
import { startRedis, type TestRedis } from "../helpers/redis";
import { connId, type TestServer } from "../helpers/server";
import { waitFor } from "../helpers/wait";

const started: TestRedis[] = [];
const instances: TestServer[] = [];
afterAll(async () => {
  await Promise.all(instances.map((i) => i.stop().catch(() => {})));
  await Promise.all(started.map((r) => r.stop()));
});

async function deployment() {
  const redis = await startRedis();
  started.push(redis);
  const prefix = redis.prefix();
  const a = await startRedisInstance(redis, prefix);
  const b = await startRedisInstance(redis, prefix);
  instances.push(a, b);
  await Promise.all([waitRedisUp(a), waitRedisUp(b)]);
  return { redis, prefix, a, b };
}

async function redisState(instance: TestServer) {
  return ((await (await fetch(`${instance.httpUrl}/health`)).json()) as { redis: string }).redis;
}

test("while Redis is down a direct message and a resume are refused with unavailable; the resend is kept and delivered once", async () => {
  const { redis, a, b } = await deployment();
  const before = await b.connect(connId(), "user=rf-bob");
  const { epoch } = await before.request({ type: "inbox" });
  await before.close();
  const alice = await a.connect(connId(), "user=rf-alice");

  await redis.kill();
  await waitFor(async () => (await redisState(a)) === "down", { what: "Redis reported down", timeoutMs: 10_000 });
  const refused = await alice.request({ type: "direct", to: "rf-bob", text: "kept?", clientMsgId: "rf-1" });
  expect(refused).toMatchObject({ type: "error", code: "unavailable", temporary: true });
  const resumeRefused = await alice.request({ type: "inbox", lastOffset: 0 });
  expect(resumeRefused).toMatchObject({ type: "error", code: "unavailable" });

  await redis.restart();
  await Promise.all([waitRedisUp(a), waitRedisUp(b)]);
  const resent = await alice.request({ type: "direct", to: "rf-bob", text: "kept?", clientMsgId: "rf-1" });
  expect(resent).toMatchObject({ ok: true, for: "direct", offset: 1 });
  expect(resent.duplicate).toBeUndefined();

  const bob = await b.connect(connId(), "user=rf-bob");
  expect(await bob.request({ type: "inbox", lastOffset: 0, epoch })).toMatchObject({
    epoch,
    offset: 1,
    recovered: true,
  });
  expect(bob.all("direct").map((f) => [f.id, f.text])).toEqual([[resent.id, "kept?"]]);
}, 30_000);

test("an inbox whose keys are gone (expired, flushed) starts a new epoch; a client of the old one gets what is kept, not recovered", async () => {
  const { redis, prefix, a, b } = await deployment();
  const alice = await a.connect(connId(), "user=ep-alice");
  for (let i = 1; i <= 2; i++)
    await alice.request({ type: "direct", to: "ep-bob", text: `old ${i}`, clientMsgId: `old-${i}` });
  const first = await b.connect(connId(), "user=ep-bob");
  const old = await first.request({ type: "inbox", lastOffset: 0 });
  expect(old).toMatchObject({ offset: 2, recovered: true });
  await first.close();

  // Every inbox key carries its owner's hash tag (one Redis Cluster slot per user).
  const client = redis.client();
  const inboxKeys = await client.keys(`${prefix}*inbox*`);
  expect(inboxKeys.length).toBeGreaterThanOrEqual(4);
  const tagged = /^[^{]*\{user:([^}]+)\}:inbox:/;
  expect(inboxKeys.filter((key) => !tagged.test(key))).toEqual([]);
  const keys = inboxKeys.filter((key) => key.match(tagged)![1] === "ep-bob");
  await client.del(...keys);

  const fresh = await alice.request({ type: "direct", to: "ep-bob", text: "new 1", clientMsgId: "new-1" });
  expect(fresh).toMatchObject({ ok: true });
  const back = await b.connect(connId(), "user=ep-bob");
  const resumed = await back.request({ type: "inbox", lastOffset: 2, epoch: old.epoch });
  expect(resumed).toMatchObject({ offset: 1, recovered: false });
  expect(resumed.epoch).not.toBe(old.epoch);
  expect(back.all("direct").map((f) => [f.text, f.offset, f.epoch])).toEqual([["new 1", 1, resumed.epoch]]);
}, 30_000);
