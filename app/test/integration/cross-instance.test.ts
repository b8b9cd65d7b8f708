import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { RedisHistoryStore } from "../../src/history/redis";
import { redisKeys } from "../../src/redis/keys";
import { TestClient } from "../helpers/client";
import { startRedisInstance, waitRedisUp } from "../helpers/cluster";
import { startRedis, type TestRedis } from "../helpers/redis";
import { connId, type TestServer } from "../helpers/server";

let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(() => redis.stop());

async function cluster(n: number, env: Record<string, string> = {}) {
  const prefix = redis.prefix();
  const instances: TestServer[] = [];
  for (let i = 0; i < n; i++) instances.push(await startRedisInstance(redis, prefix, env));
  await Promise.all(instances.map((i) => waitRedisUp(i)));
  return { prefix, instances, stop: () => Promise.all(instances.map((i) => i.stop())) };
}

async function joined(instance: TestServer, user: string, room: string, id = connId()) {
  const client = await TestClient.connect(instance.wsUrl(id, `user=${user}`));
  const answer = await client.request({ type: "join", room });
  expect(answer.type).toBe("message_response");
  return client;
}

describe("scale-out through Redis", () => {
  test("a session saved by the previous release (keyed by connectionId alone) resumes for its own user only", async () => {
    const {
      prefix,
      instances: [a],
      stop,
    } = await cluster(1);
    const id = connId("legacy");
    const key = `${prefix}session:${id}`;
    const legacy = { userId: "olduser", rooms: { "legacy-room": { epoch: "e-old", offset: 3 } } };
    await redis.client().set(key, JSON.stringify(legacy), "EX", 60);

    const intruder = await TestClient.connect(a!.wsUrl(id, "user=intruder"), { waitEstablished: false });
    expect(await intruder.next("connection_established")).toMatchObject({ resumed: false, rooms: [] });
    await intruder.close();
    expect(await redis.client().get(key)).toBe(JSON.stringify(legacy));

    const owner = await TestClient.connect(a!.wsUrl(id, "user=olduser"), { waitEstablished: false });
    expect(await owner.next("connection_established")).toMatchObject({ resumed: true, rooms: ["legacy-room"] });
    expect(await redis.client().get(key)).toBeNull();
    await owner.close();
    await stop();
  });

  test("direct messages reach every connection of the recipient on any instance", async () => {
    const {
      instances: [a, b, c],
      stop,
    } = await cluster(3);
    const sender = await TestClient.connect(a!.wsUrl(connId(), "user=carol"));
    const tab1 = await TestClient.connect(b!.wsUrl(connId(), "user=dave"));
    const tab2 = await TestClient.connect(c!.wsUrl(connId(), "user=dave"));
    const answer = await sender.request({ type: "direct", to: "dave", text: "psst", clientMsgId: "d-1" });
    for (const tab of [tab1, tab2]) {
      const got = await tab.next("direct");
      expect(got).toMatchObject({ id: answer.id, from: "carol", to: "dave", text: "psst" });
      await tab.expectNone("direct", 150);
    }
    await Promise.all([sender.close(), tab1.close(), tab2.close()]);
    await stop();
  });

  test("offsets stay dense under concurrent writers on three instances, and every member sees them in order", async () => {
    const { instances, stop } = await cluster(3, { FRAME_RATE: "1000", FRAME_BURST: "1000" });
    const perInstance = 40;
    const clients = await Promise.all(instances.map((inst, i) => joined(inst, `writer${i}`, "busy")));
    const answers = await Promise.all(
      clients.flatMap((client, i) =>
        Array.from({ length: perInstance }, (_, k) =>
          client.request({ type: "message", room: "busy", text: `m${i}-${k}`, clientMsgId: `w${i}-${k}` }, 10_000),
        ),
      ),
    );
    const offsets = answers.map((a) => a.offset).sort((x, y) => x - y);
    expect(offsets).toEqual(Array.from({ length: instances.length * perInstance }, (_, i) => i + 1));
    for (const client of clients) {
      const seen: number[] = [];
      for (let i = 0; i < offsets.length; i++) seen.push((await client.next("message", 10_000)).offset);
      expect(seen).toEqual(offsets);
      await client.expectNone("message", 100);
    }
    await Promise.all(clients.map((c) => c.close()));
    await stop();
  });

  test("a clientMsgId sent again to another instance gets the original answer and is not broadcast again", async () => {
    const {
      instances: [a, b],
      stop,
    } = await cluster(2);
    const watcher = await joined(b!, "watcher", "dedup");
    const first = await joined(a!, "erin", "dedup");
    const original = await first.request({ type: "message", room: "dedup", text: "once", clientMsgId: "same-id" });
    await first.close();
    const second = await joined(b!, "erin", "dedup");
    const repeat = await second.request({ type: "message", room: "dedup", text: "once", clientMsgId: "same-id" });
    expect(repeat).toMatchObject({ ok: true, duplicate: true, id: original.id, offset: original.offset });
    expect((await watcher.next("message")).id).toBe(original.id);
    await watcher.expectNone("message", 200);
    await Promise.all([second.close(), watcher.close()]);
    await stop();
  });

  test("a session resumes on another instance and replays exactly what was missed", async () => {
    const {
      instances: [a, b],
      stop,
    } = await cluster(2);
    const id = connId("resume");
    const talker = await joined(b!, "talker", "resume-room");
    const reader = await joined(a!, "reader", "resume-room", id);
    await talker.request({ type: "message", room: "resume-room", text: "before", clientMsgId: "t0" });
    const seen = await reader.next("message");
    const epoch = (await reader.request({ type: "join", room: "resume-room" })).epoch;
    await reader.close();
    const missed: number[] = [];
    for (let i = 1; i <= 5; i++)
      missed.push(
        (await talker.request({ type: "message", room: "resume-room", text: `missed ${i}`, clientMsgId: `t${i}` }))
          .offset,
      );

    const back = await TestClient.connect(b!.wsUrl(id, "user=reader"), { waitEstablished: false });
    const established = await back.next("connection_established");
    expect(established).toMatchObject({ resumed: true, rooms: ["resume-room"], instanceId: b!.config.instanceId });
    const answer = await back.request({ type: "join", room: "resume-room", lastOffset: seen.offset, epoch });
    expect(answer).toMatchObject({ recovered: true, epoch });
    const replayed = back.all("message").map((m) => m.offset);
    expect(replayed).toEqual(missed);
    await talker.request({ type: "message", room: "resume-room", text: "after", clientMsgId: "t9" });
    const live = await back.next((f) => f.type === "message" && f.text === "after");
    expect(live.offset).toBe(missed.at(-1)! + 1);
    expect(back.all("message").filter((m) => missed.includes(m.offset))).toHaveLength(missed.length);
    await Promise.all([back.close(), talker.close()]);
    await stop();
  });

  test("presence counts a user once across instances: first connection in, last connection out", async () => {
    const {
      instances: [a, b],
      stop,
    } = await cluster(2);
    const observer = await joined(a!, "observer", "pres");
    await observer.next((f) => f.type === "presence_diff" && f.joins.includes("observer"));
    const tab1 = await joined(a!, "frank", "pres");
    expect((await observer.next((f) => f.type === "presence_diff" && f.joins.includes("frank"))).leaves).toEqual([]);
    const tab2 = await joined(b!, "frank", "pres");
    await observer.expectNone((f) => f.type === "presence_diff", 300);
    const members = await observer.request({ type: "presence", room: "pres" });
    expect(members.members).toEqual(["frank", "observer"]);
    await tab1.close();
    await observer.expectNone((f) => f.type === "presence_diff", 300);
    await tab2.close();
    const left = await observer.next((f) => f.type === "presence_diff" && f.leaves.length > 0);
    expect(left).toMatchObject({ room: "pres", joins: [], leaves: ["frank"] });
    await observer.close();
    await stop();
  });

  test("admin broadcast reaches connections on every instance", async () => {
    const {
      instances: [a, b],
      stop,
    } = await cluster(2, { ADMIN_TOKEN: "secret-admin" });
    const one = await TestClient.connect(a!.wsUrl(connId(), "user=one"));
    const two = await TestClient.connect(b!.wsUrl(connId(), "user=two"));
    const denied = await fetch(`${a!.httpUrl}/admin/broadcast`, {
      method: "POST",
      body: JSON.stringify({ text: "x" }),
      headers: { "content-type": "application/json" },
    });
    expect(denied.status).toBe(401);
    const res = await fetch(`${a!.httpUrl}/admin/broadcast`, {
      method: "POST",
      headers: { authorization: "Bearer secret-admin", "content-type": "application/json" },
      body: JSON.stringify({ text: "maintenance at noon" }),
    });
    expect(res.status).toBe(200);
    for (const c of [one, two]) expect((await c.next("system")).text).toBe("maintenance at noon");
    const presence = await fetch(`${b!.httpUrl}/admin/presence/lobby`, {
      headers: { authorization: "Bearer secret-admin" },
    });
    expect(await presence.json()).toEqual({ room: "lobby", members: [] });
    await Promise.all([one.close(), two.close()]);
    await stop();
  });

  test("a message lost on pub/sub is filled in from the stream, so no offset is skipped", async () => {
    const {
      prefix,
      instances: [a, b],
      stop,
    } = await cluster(2);
    const listener = await joined(b!, "listener", "gappy");
    const writer = await joined(a!, "writer", "gappy");
    await writer.request({ type: "message", room: "gappy", text: "one", clientMsgId: "g1" });
    expect((await listener.next("message")).offset).toBe(1);
    // Stored but never published: what a pub/sub message lost in transit looks like to B.
    const history = new RedisHistoryStore(redis.client(), redisKeys(prefix), {
      historySize: 100,
      ttlSeconds: 600,
      dedupWindowSeconds: 300,
    });
    await history.append({
      room: "gappy",
      id: "lost-id",
      from: "writer",
      text: "lost",
      ts: Date.now(),
      clientMsgId: "g2",
    });
    await writer.request({ type: "message", room: "gappy", text: "three", clientMsgId: "g3" });
    const two = await listener.next("message");
    const three = await listener.next("message");
    expect([two.offset, two.text, three.offset, three.text]).toEqual([2, "lost", 3, "three"]);
    const metrics = await (await fetch(`${b!.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/^backplane_gap_messages_total 1$/m);
    await Promise.all([listener.close(), writer.close()]);
    await stop();
  });
});

describe("batched frames through Redis", () => {
  test("messages from another instance reach batched and plain members there complete, in offset order, batched ones joined", async () => {
    const {
      instances: [a, b],
      stop,
    } = await cluster(2);
    const room = "batched-remote";
    const sender = await joined(a!, "sam", room);
    const batched = await TestClient.connect(b!.wsUrl(connId(), `user=bea&batch=1`));
    expect((await batched.request({ type: "join", room })).ok).toBe(true);
    const plain = await joined(b!, "pat", room);
    const fromBatched = batched.wire.length;
    const fromPlain = plain.wire.length;
    const count = 50;
    for (let i = 1; i <= count; i++) sender.send({ type: "message", room, text: `x${i}`, clientMsgId: `x-${i}` });
    for (const member of [batched, plain]) {
      const offsets: number[] = [];
      for (let i = 1; i <= count; i++) offsets.push((await member.next("message")).offset);
      expect(offsets).toEqual(Array.from({ length: count }, (_, i) => i + 1));
    }
    const carrying = (wire: string[]) => wire.filter((text) => text.includes('"type":"message"'));
    // One WebSocket frame per message for the plain member; the batched one got them in fewer
    // (Redis delivers a stored batch's messages to the subscriber in one read, handled in one turn).
    expect(carrying(plain.wire.slice(fromPlain)).length).toBe(count);
    expect(carrying(batched.wire.slice(fromBatched)).length).toBeLessThan(count);
    await Promise.all([sender.close(), batched.close(), plain.close()]);
    await stop();
  });
});
