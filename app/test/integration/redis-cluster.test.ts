// The server on a Redis Cluster of 3 masters and 3 replicas (started by the test): what users of two
// instances notice, under load and for each cross-instance feature.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { RedisHistoryStore } from "../../src/history/redis";
import { redisKeys } from "../../src/redis/keys";
import { startBinary } from "../helpers/binary";
import { TestClient } from "../helpers/client";
import { startClusterInstance, waitRedisUp } from "../helpers/cluster";
import { LoadClient } from "../helpers/load-client";
import { startRedisCluster, type TestCluster } from "../helpers/redis-cluster";
import { connId, type TestServer } from "../helpers/server";
import { waitFor } from "../helpers/wait";

let cluster: TestCluster;
beforeAll(async () => {
  cluster = await startRedisCluster();
}, 60_000);
afterAll(() => cluster?.stop());

async function instances(n: number, env: Record<string, string> = {}) {
  const prefix = cluster.prefix();
  const list: TestServer[] = [];
  try {
    for (let i = 0; i < n; i++) list.push(await startClusterInstance(cluster, prefix, env));
    await Promise.all(list.map((i) => waitRedisUp(i)));
  } catch (error) {
    await Promise.all(list.map((i) => i.stop()));
    throw error;
  }
  return { prefix, list, stop: () => Promise.all(list.map((i) => i.stop())) };
}

async function joined(instance: TestServer, user: string, room: string, id = connId()) {
  const client = await TestClient.connect(instance.wsUrl(id, `user=${user}`));
  const answer = await client.request({ type: "join", room });
  expect(answer.type).toBe("message_response");
  return client;
}

describe("two instances on a Redis Cluster", () => {
  test("200 clients in 100 rooms send 20,000 messages: each delivered once, in offset order, to every member, and stored; sessions resume on the other instance", async () => {
    const ROOMS = 100;
    const PER_CLIENT = 100;
    const WINDOW = 10;
    const {
      prefix,
      list: [a, b],
      stop,
    } = await instances(2, { HISTORY_SIZE: "1000" });
    const clients: LoadClient[] = [];
    try {
      // Each room has one member on each instance.
      for (let r = 0; r < ROOMS; r++)
        for (const [side, instance] of [
          ["a", a!],
          ["b", b!],
        ] as const) {
          const id = connId(`load-${side}${r}`);
          const user = `u${side}${r}`;
          clients.push(await LoadClient.connect(instance.wsUrl(id, `user=${user}`), user, id));
        }
      const roomOf = (i: number) => `load-${Math.floor(i / 2)}`;
      const joins = await Promise.all(clients.map((c, i) => c.request({ type: "join", room: roomOf(i) })));
      expect(joins.filter((j) => j.type !== "message_response")).toEqual([]);
      const epochs = new Map(joins.map((j) => [j.room as string, j.epoch as string]));

      const acked = new Map<string, { offset: number; id: string }[]>();
      await Promise.all(
        clients.map(async (client, i) => {
          const room = roomOf(i);
          for (let k = 0; k < PER_CLIENT; k += WINDOW) {
            const answers = await Promise.all(
              Array.from({ length: WINDOW }, (_, w) =>
                client.request({ type: "message", room, text: `${client.user} ${k + w}`, clientMsgId: `m${k + w}` }),
              ),
            );
            for (const answer of answers) {
              expect(answer).toMatchObject({ type: "message_response", ok: true, room });
              expect(answer.duplicate).toBeUndefined();
              const list = acked.get(room) ?? [];
              list.push({ offset: answer.offset, id: answer.id });
              acked.set(room, list);
            }
          }
        }),
      );
      const total = [...acked.values()].reduce((n, l) => n + l.length, 0);
      expect(total).toBe(ROOMS * 2 * PER_CLIENT);

      const expected = Array.from({ length: 2 * PER_CLIENT }, (_, i) => i + 1);
      for (const list of acked.values()) expect(list.map((m) => m.offset).sort((x, y) => x - y)).toEqual(expected);
      // Delivery: every member of every room, every message once, in offset order, no epoch change.
      await waitFor(() => clients.every((c) => c.messages.length >= 2 * PER_CLIENT), {
        timeoutMs: 20_000,
        what: "every message delivered",
      });
      clients.forEach((client, i) => {
        const room = roomOf(i);
        const byOffset = new Map(acked.get(room)!.map((m) => [m.offset, m.id]));
        expect(client.messages.map((m) => m.offset)).toEqual(expected);
        expect(client.messages.every((m) => m.room === room && byOffset.get(m.offset) === m.id)).toBe(true);
        expect(client.epochs).toEqual([]);
      });

      // Stored: the room's log on its shard holds every acknowledged message.
      const history = new RedisHistoryStore(cluster.client(), redisKeys(prefix, "cluster"), {
        historySize: 1000,
        ttlSeconds: 600,
        dedupWindowSeconds: 300,
      });
      for (const [room, list] of acked) {
        const replay = await history.since(room, 0, epochs.get(room));
        expect(replay.complete).toBe(true);
        expect(replay.messages.map((m) => m.id)).toEqual(list.sort((x, y) => x.offset - y.offset).map((m) => m.id));
      }
      // The rooms are spread over the three shards.
      const masters = new Set(await Promise.all([...acked.keys()].map((room) => cluster.masterOf(`{room:${room}}`))));
      expect(masters.size).toBe(3);

      // Ten members on A leave; their partners on B send three more each; they resume on B.
      const leaving = clients.filter((_, i) => i % 2 === 0).slice(0, 10);
      await Promise.all(leaving.map((c) => c.close()));
      await waitFor(() => a!.server.registry.size === ROOMS - 10, { timeoutMs: 5000, what: "sessions saved" });
      const missed = new Map<string, number[]>();
      await Promise.all(
        leaving.map(async (c) => {
          const i = clients.indexOf(c);
          const room = roomOf(i);
          const partner = clients[i + 1]!;
          const offsets: number[] = [];
          for (let k = 0; k < 3; k++)
            offsets.push(
              (await partner.request({ type: "message", room, text: `missed ${k}`, clientMsgId: `x${k}` })).offset,
            );
          missed.set(room, offsets);
        }),
      );
      await Promise.all(
        leaving.map(async (c) => {
          const room = roomOf(clients.indexOf(c));
          const back = await LoadClient.connect(b!.wsUrl(c.connectionId, `user=${c.user}`), c.user, c.connectionId);
          clients.push(back);
          expect(back.established).toMatchObject({ resumed: true, rooms: [room], instanceId: b!.config.instanceId });
          const answer = await back.request({
            type: "join",
            room,
            lastOffset: 2 * PER_CLIENT,
            epoch: epochs.get(room),
          });
          expect(answer).toMatchObject({ recovered: true, epoch: epochs.get(room) });
          expect(back.messages.map((m) => m.offset)).toEqual(missed.get(room)!);
        }),
      );
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await stop();
    }
  }, 120_000);

  test("direct messages reach every connection of the recipient on either instance, once per clientMsgId", async () => {
    const {
      list: [a, b],
      stop,
    } = await instances(2);
    const sender = await TestClient.connect(a!.wsUrl(connId(), "user=carol"));
    const tab1 = await TestClient.connect(a!.wsUrl(connId(), "user=dave"));
    const tab2 = await TestClient.connect(b!.wsUrl(connId(), "user=dave"));
    const answer = await sender.request({ type: "direct", to: "dave", text: "psst", clientMsgId: "d-1" });
    const again = await sender.request({ type: "direct", to: "dave", text: "psst", clientMsgId: "d-1" });
    expect(again).toMatchObject({ id: answer.id });
    for (const tab of [tab1, tab2]) {
      expect(await tab.next("direct")).toMatchObject({ id: answer.id, from: "carol", to: "dave", text: "psst" });
      await tab.expectNone("direct", 200);
    }
    await Promise.all([sender.close(), tab1.close(), tab2.close()]);
    await stop();
  });

  test("a room message resent to the other instance gets the original answer and is not delivered again", async () => {
    const {
      list: [a, b],
      stop,
    } = await instances(2);
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

  test("presence counts a user once across instances, and admin broadcast reaches both", async () => {
    const {
      list: [a, b],
      stop,
    } = await instances(2, { ADMIN_TOKEN: "secret-admin" });
    const observer = await joined(a!, "observer", "pres");
    await observer.next((f) => f.type === "presence_diff" && f.joins.includes("observer"));
    const tab1 = await joined(a!, "frank", "pres");
    await observer.next((f) => f.type === "presence_diff" && f.joins.includes("frank"));
    const tab2 = await joined(b!, "frank", "pres");
    await observer.expectNone((f) => f.type === "presence_diff", 300);
    expect((await observer.request({ type: "presence", room: "pres" })).members).toEqual(["frank", "observer"]);
    await tab1.close();
    await observer.expectNone((f) => f.type === "presence_diff", 300);
    await tab2.close();
    expect(await observer.next((f) => f.type === "presence_diff" && f.leaves.length > 0)).toMatchObject({
      joins: [],
      leaves: ["frank"],
    });

    const other = await TestClient.connect(b!.wsUrl(connId(), "user=other"));
    const res = await fetch(`${a!.httpUrl}/admin/broadcast`, {
      method: "POST",
      headers: { authorization: "Bearer secret-admin", "content-type": "application/json" },
      body: JSON.stringify({ text: "maintenance at noon" }),
    });
    expect(res.status).toBe(200);
    for (const c of [observer, other]) expect((await c.next("system")).text).toBe("maintenance at noon");
    await Promise.all([observer.close(), other.close()]);
    await stop();
  });

  test("the binary on the cluster: members of an instance killed with SIGKILL leave presence within PRESENCE_TTL", async () => {
    const prefix = cluster.prefix();
    const env = { REDIS_CLUSTER_NODES: cluster.seeds, REDIS_KEY_PREFIX: prefix, PRESENCE_TTL: "3", LOG_LEVEL: "warn" };
    const doomed = await startBinary(env);
    const survivor = await startBinary(env);
    try {
      for (const bin of [doomed, survivor])
        await waitFor(
          async () => ((await (await fetch(`${bin.httpUrl}/health`)).json()) as { redis: string }).redis === "up",
          { timeoutMs: 10_000, what: "the binary sees the cluster up" },
        );
      const watcher = await TestClient.connect(`${survivor.httpUrl.replace("http", "ws")}/ws/chat/${connId()}?user=w`);
      await watcher.request({ type: "join", room: "sweep" });
      const ghost = await TestClient.connect(`${doomed.httpUrl.replace("http", "ws")}/ws/chat/${connId()}?user=ghost`);
      await ghost.request({ type: "join", room: "sweep" });
      await watcher.next((f) => f.type === "presence_diff" && f.joins.includes("ghost"));
      const killedAt = Date.now();
      await doomed.stop("SIGKILL");
      const left = await watcher.next((f) => f.type === "presence_diff" && f.leaves.includes("ghost"), 6000);
      expect(Date.now() - killedAt).toBeLessThanOrEqual(3000);
      expect(left).toMatchObject({ room: "sweep", joins: [] });
      expect((await watcher.request({ type: "presence", room: "sweep" })).members).toEqual(["w"]);
      await watcher.close();
    } finally {
      await doomed.stop("SIGKILL").catch(() => {});
      await survivor.stop("SIGTERM");
    }
  }, 30_000);
});
