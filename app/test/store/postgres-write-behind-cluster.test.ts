// The write-behind into PostgreSQL on a Redis Cluster (3 masters, 3 replicas) and a real PostgreSQL,
// both started here: rooms on every shard reach the database exactly once, and the persisters' scan
// of room metas reaches every master (a room whose notification was lost is found on any shard);
// the same for direct-message inboxes.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { SQL } from "bun";
import { createLogger } from "../../src/observability/logger";
import { createClusterClients } from "../../src/redis/cluster";
import { redisKeys } from "../../src/redis/keys";
import { keySlot } from "../../src/redis/slots";
import { openPostgres, redisBackends } from "../../src/server";
import { TestClient } from "../helpers/client";
import { waitRedisUp } from "../helpers/cluster";
import { startPostgres, type TestPostgres } from "../helpers/postgres";
import { startRedisCluster, type TestCluster } from "../helpers/redis-cluster";
import { connId, startTestServer, type TestServer } from "../helpers/server";
import { waitFor } from "../helpers/wait";

let cluster: TestCluster;
let pg: TestPostgres;
beforeAll(async () => {
  [cluster, pg] = await Promise.all([startRedisCluster(), startPostgres()]);
}, 90_000);
afterAll(async () => {
  await Promise.allSettled([cluster?.stop(), pg?.stop()]);
});

async function instance(prefix: string, databaseUrl: string): Promise<TestServer> {
  const database = await openPostgres({
    databaseUrl,
    databasePoolSize: 4,
    databaseStatementTimeoutMs: 5000,
    messageRetentionDays: 0,
  });
  const server = await startTestServer(
    { REDIS_CLUSTER_NODES: cluster.seeds, REDIS_KEY_PREFIX: prefix, DATABASE_URL: databaseUrl },
    (config, metrics) => {
      const logger = createLogger(config);
      return redisBackends(config, createClusterClients(config.redisCluster!, { logger, metrics }), {
        logger,
        metrics,
        database,
      });
    },
  );
  await waitRedisUp(server);
  return server;
}

type Ack = { room: string; offset: number; id: string };

async function rows(sql: SQL): Promise<Ack[]> {
  const list: { room: string; offset: string; id: string }[] =
    await sql`SELECT room, "offset", id FROM messages ORDER BY room, "offset"`;
  return list.map((r) => ({ room: r.room, offset: Number(r.offset), id: r.id }));
}

const byRoomAndOffset = (a: Ack, b: Ack) => (a.room < b.room ? -1 : a.room > b.room ? 1 : a.offset - b.offset);

describe("PostgreSQL write-behind on a Redis Cluster", () => {
  test("rooms on every shard are written exactly once; a lost notification is found by the scan on any master", async () => {
    const prefix = cluster.prefix();
    const url = await pg.database();
    const sql = new SQL({ url, max: 2 });
    const keys = redisKeys(prefix, "cluster");
    const rooms = Array.from({ length: 30 }, (_, i) => `pgc-${i}`);
    // The rooms land on every master, so both the appends and the scan cross every shard.
    const owners = new Set(await Promise.all(rooms.map((r) => cluster.masterOf(keys.roomMeta(r)))));
    expect(owners.size).toBe(3);
    expect(new Set(rooms.map((r) => keySlot(keys.roomMeta(r)))).size).toBe(rooms.length);

    let servers: TestServer[] = await Promise.all([instance(prefix, url), instance(prefix, url)]);
    const acks: Ack[] = [];
    try {
      await Promise.all(
        rooms.map(async (room, i) => {
          const client = await TestClient.connect(servers[i % 2]!.wsUrl(connId(), `user=w${i}`));
          await client.request({ type: "join", room });
          for (let k = 0; k < 40; k++) {
            const answer = await client.request({ type: "message", room, text: `m${k}`, clientMsgId: `${room}-${k}` });
            expect(answer.type).toBe("message_response");
            acks.push({ room, offset: answer.offset, id: answer.id });
          }
          client.close();
        }),
      );
      acks.sort(byRoomAndOffset);
      await waitFor(async () => (await rows(sql)).length === acks.length, {
        timeoutMs: 20_000,
        what: `${acks.length} rows in PostgreSQL`,
      });
      expect(await rows(sql)).toEqual(acks);
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
    }

    // The database loses the rows and every room is marked unpersisted, with no notification in the
    // dirty set: only a scan that reads every master's room metas can find all 30 rooms again.
    await sql`DELETE FROM messages`;
    const redis = cluster.client();
    await Promise.all(rooms.map((room) => redis.hset(keys.roomMeta(room), "persisted", 0)));
    await redis.del(keys.persistDirty());
    servers = [await instance(prefix, url)];
    try {
      await waitFor(async () => (await rows(sql)).length === acks.length, {
        timeoutMs: 30_000,
        what: "the scan to find every room again",
      });
      expect(await rows(sql)).toEqual(acks);
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
      await sql.close();
    }
  }, 120_000);
  test("inboxes on every shard are written exactly once; a lost notification is found by the scan on any master", async () => {
    const prefix = cluster.prefix();
    const url = await pg.database();
    const sql = new SQL({ url, max: 2 });
    const keys = redisKeys(prefix, "cluster");
    const users = Array.from({ length: 12 }, (_, i) => `dmc-${i}`);
    const owners = new Set(await Promise.all(users.map((u) => cluster.masterOf(keys.inboxMeta(u)))));
    expect(owners.size).toBe(3);
    const stored = async () =>
      (
        (await sql`SELECT user_id, "offset", id FROM inbox_messages ORDER BY user_id, "offset"`) as {
          user_id: string;
          offset: string;
          id: string;
        }[]
      ).map((r) => ({ user: r.user_id, offset: Number(r.offset), id: r.id }));

    let servers: TestServer[] = await Promise.all([instance(prefix, url), instance(prefix, url)]);
    // Each user gets 10 direct messages from its neighbour, through both instances: the recipient's
    // entries and the sender's, 20 per user.
    const expected: { user: string; offset: number; id: string }[] = [];
    try {
      await Promise.all(
        users.map(async (user, i) => {
          const client = await TestClient.connect(servers[i % 2]!.wsUrl(connId(), `user=${user}`));
          const to = users[(i + 1) % users.length]!;
          for (let k = 0; k < 10; k++) {
            const answer = await client.request({ type: "direct", to, text: `d${k}`, clientMsgId: `${user}-${k}` });
            expect(answer).toMatchObject({ ok: true, for: "direct" });
            expected.push({ user, offset: answer.offset, id: answer.id });
          }
          client.close();
        }),
      );
      await waitFor(async () => (await stored()).length === users.length * 20, {
        timeoutMs: 20_000,
        what: `${users.length * 20} inbox rows in PostgreSQL`,
      });
      const rows = await stored();
      // Each inbox dense from 1, each message once per inbox; the senders' own entries as acknowledged.
      for (const user of users) {
        const own = rows.filter((r) => r.user === user);
        expect(own.map((r) => r.offset)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
        expect(new Set(own.map((r) => r.id)).size).toBe(20);
      }
      for (const ack of expected) expect(rows).toContainEqual(ack);
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
    }

    // The database loses the rows and every inbox is marked unpersisted, with no notification in the
    // dirty set: only a scan of every master's inbox metas finds all of them again.
    const before = await stored();
    await sql`DELETE FROM inbox_messages`;
    const redis = cluster.client();
    await Promise.all(users.map((user) => redis.hset(keys.inboxMeta(user), "persisted", 0)));
    await redis.del(keys.inboxPersistDirty());
    servers = [await instance(prefix, url)];
    try {
      await waitFor(async () => (await stored()).length === before.length, {
        timeoutMs: 30_000,
        what: "the scan to find every inbox again",
      });
      expect(await stored()).toEqual(before);
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
      await sql.close();
    }
  }, 120_000);
});
