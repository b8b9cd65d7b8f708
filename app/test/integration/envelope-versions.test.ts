// The backplane envelope across releases, against a real Redis: the append script publishes one
// v2 envelope per room per call, and an instance of this release beside one of the previous
// release (which reads only v1) keeps exchanging messages with it both ways.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { decodeEnvelope } from "../../src/backplane/envelope";
import { RedisEnvelopeVersions } from "../../src/backplane/versions";
import { RedisHistoryStore } from "../../src/history/redis";
import { createLogger } from "../../src/observability/logger";
import { redisKeys } from "../../src/redis/keys";
import { roomTopic } from "../../src/rooms/topics";
import { TestClient } from "../helpers/client";
import { startRedisInstance, waitRedisUp } from "../helpers/cluster";
import { startRedis, type TestRedis } from "../helpers/redis";
import { connId } from "../helpers/server";

let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(() => redis.stop());

const logger = createLogger({ logLevel: "error", logDir: "" } as Parameters<typeof createLogger>[0]);

/** A subscribed connection collecting every payload published on the given channels. */
async function listen(...channels: string[]) {
  const subscriber = new Redis(redis.url);
  const payloads: string[] = [];
  subscriber.on("message", (_channel: string, payload: string) => payloads.push(payload));
  await subscriber.subscribe(...channels);
  return {
    payloads,
    /** Waits until `count` payloads arrived (3 s at most). */
    async count(count: number) {
      const deadline = Date.now() + 3000;
      while (payloads.length < count && Date.now() < deadline) await Bun.sleep(5);
      return payloads;
    },
    close: () => subscriber.disconnect(),
  };
}

const draft = (room: string, k: number) => ({
  room,
  id: `id-${room}-${k}`,
  from: "ann",
  text: `text ${k} | with a bar`,
  ts: 1_700_000_000_000 + k,
  clientMsgId: `c-${room}-${k}`,
});

/** A Redis history store that publishes as `instanceId` in envelope `version`. */
const publisher = (keys: ReturnType<typeof redisKeys>, instanceId: string, version: 1 | 2) =>
  new RedisHistoryStore(redis.client(), keys, {
    historySize: 100,
    ttlSeconds: 600,
    dedupWindowSeconds: 300,
    publishAs: instanceId,
    envelopeVersion: () => version,
  });

describe("append script publishing", () => {
  test("v2: one PUBLISH per room per script call, holding that room's messages in offset order", async () => {
    const keys = redisKeys(redis.prefix());
    const history = publisher(keys, "i-new", 2);
    const sub = await listen(keys.channel(roomTopic("a")), keys.channel(roomTopic("b")));
    // One turn of the event loop: one script call.
    const results = await Promise.all([
      ...[1, 2, 3].map((k) => history.append(draft("a", k))),
      ...[1, 2].map((k) => history.append(draft("b", k))),
      history.append(draft("a", 4)),
    ]);
    expect(results.map((r) => r.status)).toEqual(Array(6).fill("stored"));
    const payloads = await sub.count(2);
    await Bun.sleep(100);
    expect(payloads).toHaveLength(2);
    const byRoom = new Map(payloads.map((p) => [JSON.parse(decodeEnvelope(p)!.frames![0]!).room, decodeEnvelope(p)!]));
    const a = byRoom.get("a")!;
    expect(a).toMatchObject({ origin: "i-new", stored: true, offset: 1 });
    expect(a.frames!.map((f) => JSON.parse(f))).toEqual(
      [1, 2, 3, 4].map((k) => ({ type: "message", offset: k, ...draft("a", k) })),
    );
    // The frame a member gets is the stored message with its type, the same JSON a history read returns.
    const replay = await history.since("a", 0);
    expect(a.frames!.map((f) => ({ ...JSON.parse(f), type: undefined }))).toEqual(
      replay.messages.map((m) => ({ ...m, type: undefined })),
    );
    expect(byRoom.get("b")!.frames!.map((f) => JSON.parse(f).offset)).toEqual([1, 2]);
    expect(a.epoch).toBe(replay.epoch);
    sub.close();
  });

  test("v1: one PUBLISH per message, the JSON envelope the previous release reads", async () => {
    const keys = redisKeys(redis.prefix());
    const history = publisher(keys, "i-new", 1);
    const sub = await listen(keys.channel(roomTopic("a")));
    await Promise.all([1, 2, 3].map((k) => history.append(draft("a", k))));
    const payloads = await sub.count(3);
    expect(payloads.map((p) => JSON.parse(p))).toEqual(
      [1, 2, 3].map((k) => ({
        origin: "i-new",
        topic: "room:a",
        epoch: expect.any(String),
        offset: k,
        sentAt: expect.any(Number),
        message: { offset: k, ...draft("a", k) },
      })),
    );
    sub.close();
  });
});

/**
 * A double of the previous release, as far as the backplane goes: it registers in the instance
 * registry as that release's presence store does (liveness key, registry set) and advertises no
 * envelope versions; it reads its room's channel as that release's RedisBackplane.receive did
 * (JSON.parse, a failure counted as a decode error); it publishes v1, its append script's envelope
 * being the one this release's script writes in v1 (checked above).
 */
async function previousRelease(prefix: string, room: string) {
  const keys = redisKeys(prefix);
  const id = "release-previous";
  await redis.client().multi().set(keys.instanceAlive(id), "1").sadd(keys.instances(), id).exec();
  const sub = await listen(keys.channel(roomTopic(room)));
  const history = publisher(keys, id, 1);
  return {
    sub,
    history,
    /** What its backplane made of each payload: the envelope, or undefined for a decode error. */
    received: () =>
      sub.payloads.map((p) => {
        try {
          return JSON.parse(p) as { origin: string; message?: { text: string } };
        } catch {
          return undefined;
        }
      }),
    stop: async () => {
      sub.close();
      await redis.client().del(keys.instanceAlive(id));
    },
  };
}

describe("blue-green: this release beside the previous one", () => {
  test("messages cross both ways in v1 while the previous release lives, and v2 is used once it is gone", async () => {
    const prefix = redis.prefix();
    const room = "bluegreen";
    const old = await previousRelease(prefix, room);
    const instance = await startRedisInstance(redis, prefix);
    await waitRedisUp(instance);
    const versions = new RedisEnvelopeVersions(redis.client(), redisKeys(prefix), { instanceId: "probe", logger });
    // The instance advertises v2 but the previous release does not: v1 is what is published.
    expect(await versions.check()).toBe(1);

    const member = await TestClient.connect(instance.wsUrl(connId(), "user=nia"));
    expect((await member.request({ type: "join", room })).type).toBe("message_response");
    for (let k = 1; k <= 5; k++)
      await member.request({ type: "message", room, text: `new ${k}`, clientMsgId: `n-${k}` });
    const deadline0 = Date.now() + 3000;
    while (old.received().filter((e) => e?.message).length < 5 && Date.now() < deadline0) await Bun.sleep(5);
    // Every envelope (presence notices included) is one the previous release decodes.
    const received = old.received();
    expect(received).not.toContain(undefined);
    expect(received.filter((e) => e?.message).map((e) => e!.message!.text)).toEqual(
      [1, 2, 3, 4, 5].map((k) => `new ${k}`),
    );

    // The previous release's messages and frames reach this release's members.
    const stored = await old.history.append({ ...draft(room, 9), text: "from the previous release" });
    expect(stored.status).toBe("stored");
    for (let k = 1; k <= 5; k++) expect((await member.next("message")).text).toBe(`new ${k}`);
    const got = await member.next("message");
    expect(got).toMatchObject({ offset: 6, text: "from the previous release", from: "ann" });
    const typing = JSON.stringify({ type: "typing", room, from: "olga", active: true });
    await redis
      .client()
      .publish(
        redisKeys(prefix).channel(roomTopic(room)),
        JSON.stringify({ origin: "release-previous", topic: roomTopic(room), frame: typing, sentAt: Date.now() }),
      );
    expect(await member.next("typing")).toMatchObject({ from: "olga", active: true });

    // Once the previous release is gone, the next registry read switches to v2.
    await old.stop();
    const watch = await listen(redisKeys(prefix).channel(roomTopic(room)));
    let k = 0;
    const deadline = Date.now() + 5000;
    while (!watch.payloads.some((p) => p.startsWith("2|s|")) && Date.now() < deadline) {
      await member.request({ type: "message", room, text: `later ${++k}`, clientMsgId: `l-${k}` });
      await Bun.sleep(50);
    }
    expect(watch.payloads.find((p) => p.startsWith("2|s|"))).toBeDefined();
    expect(await versions.check()).toBe(2);
    // The member got every message once, in offset order, across the switch.
    const offsets: number[] = [];
    for (let i = 0; i < k; i++)
      offsets.push(
        (await member.next((f) => f.type === "message" && String(f.text).startsWith("later"))).offset as number,
      );
    expect(offsets).toEqual(Array.from({ length: k }, (_, i) => 7 + i));
    const metrics = await (await fetch(`${instance.httpUrl}/metrics`)).text();
    expect(metrics).not.toMatch(/^backplane_errors_total\{op="decode"\} [1-9]/m);
    watch.close();
    await versions.close();
    await member.close();
    await instance.stop();
  });
});

describe("v2 between instances of this release", () => {
  test("members on either instance get every message once and in order, from batches of one publish per room", async () => {
    const prefix = redis.prefix();
    const room = "v2room";
    const [a, b] = [await startRedisInstance(redis, prefix), await startRedisInstance(redis, prefix)];
    await Promise.all([waitRedisUp(a), waitRedisUp(b)]);
    const watch = await listen(redisKeys(prefix).channel(roomTopic(room)));
    const onA = await TestClient.connect(a.wsUrl(connId(), "user=ada"));
    const onB = await TestClient.connect(b.wsUrl(connId(), "user=bo"));
    for (const c of [onA, onB]) expect((await c.request({ type: "join", room })).type).toBe("message_response");
    // Both instances publish v2 once their registry reads agree (within a second or two).
    let k = 0;
    const deadline = Date.now() + 5000;
    const v2From = (origin: string) =>
      watch.payloads.some((p) => p.startsWith("2|s|") && decodeEnvelope(p)!.origin === origin);
    while (!(v2From(a.config.instanceId) && v2From(b.config.instanceId)) && Date.now() < deadline) {
      await Promise.all([
        onA.request({ type: "message", room, text: `w${++k}`, clientMsgId: `a-${k}` }),
        onB.request({ type: "message", room, text: `w${++k}`, clientMsgId: `b-${k}` }),
      ]);
      await Bun.sleep(50);
    }
    expect(v2From(a.config.instanceId) && v2From(b.config.instanceId)).toBe(true);
    // A burst sent at once from both sides: batched per script call, one publish per room each.
    const burst = 20;
    await Promise.all(
      Array.from({ length: burst }, (_, i) =>
        (i % 2 === 0 ? onA : onB).request({ type: "message", room, text: `w${++k}`, clientMsgId: `burst-${i}` }),
      ),
    );
    for (const c of [onA, onB]) {
      const offsets: number[] = [];
      for (let i = 0; i < k; i++) offsets.push((await c.next("message")).offset as number);
      expect(offsets).toEqual(Array.from({ length: k }, (_, i) => i + 1));
      await c.expectNone("message", 100);
    }
    const v2 = watch.payloads.filter((p) => p.startsWith("2|s|")).map((p) => decodeEnvelope(p)!);
    expect(v2.some((e) => e.frames!.length > 1)).toBe(true);
    watch.close();
    await Promise.all([onA.close(), onB.close()]);
    await Promise.all([a.stop(), b.stop()]);
  });
});

describe("envelope version negotiation", () => {
  test("only live instances count: a dead one that read v1 only does not hold v2 back, and entries of instances gone from the registry are removed", async () => {
    const keys = redisKeys(redis.prefix());
    const client = redis.client();
    // As the presence store registers an instance; a dead one's liveness key has expired.
    const register = (id: string, alive: boolean) =>
      alive
        ? client.multi().sadd(keys.instances(), id).set(keys.instanceAlive(id), "1", "PX", 60_000).exec()
        : client.sadd(keys.instances(), id);
    const a = new RedisEnvelopeVersions(client, keys, { instanceId: "a", logger, intervalMs: 60_000 });
    const b = new RedisEnvelopeVersions(client, keys, { instanceId: "b", logger, intervalMs: 60_000 });
    await Promise.all([register("a", true), register("b", true)]);
    expect([await a.check(), await b.check()]).toEqual([2, 2]);
    // A previous release registered, then died: its liveness key expired, the sweep has not run yet.
    await register("old", false);
    expect(await a.check()).toBe(2);
    await client.set(keys.instanceAlive("old"), "1", "PX", 60_000);
    expect(await a.check()).toBe(1);
    expect(a.version()).toBe(1);
    // b left the registry (the presence sweep removed it): its advertisement goes too.
    await client.multi().srem(keys.instances(), "b", "old").del(keys.instanceAlive("old")).exec();
    expect(await a.check()).toBe(2);
    expect(Object.keys(await client.hgetall(keys.instanceEnvelopes()))).toEqual(["a"]);
    await Promise.all([a.close(), b.close()]);
  });
});
