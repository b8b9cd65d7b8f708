// Direct messages and read positions in PostgreSQL, with two instances on a real Redis and a real
// PostgreSQL, both started here: a direct message acknowledged after the Redis append reaches
// PostgreSQL exactly once, also across a SIGKILL of the database; a user whose Redis inbox is gone
// (flushed, trimmed) still gets their direct messages on reconnect, from PostgreSQL; a read
// position outlives its Redis key.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { SQL } from "bun";
import { RedisInboxStore } from "../../src/inbox/redis";
import { createLogger } from "../../src/observability/logger";
import { createRedisClients } from "../../src/redis/clients";
import { redisKeys } from "../../src/redis/keys";
import { openPostgres, redisBackends } from "../../src/server";
import { createInboxPersister } from "../../src/store/inbox-write-behind";
import { PostgresMessageStore } from "../../src/store/postgres";
import { PostgresInboxArchive } from "../../src/store/postgres-inbox";
import type { TestClient } from "../helpers/client";
import { waitRedisUp } from "../helpers/cluster";
import { sample, scrape } from "../helpers/metrics";
import { startPostgres, type TestPostgres } from "../helpers/postgres";
import { startRedis, type TestRedis } from "../helpers/redis";
import { startTestServer, type TestServer } from "../helpers/server";
import { waitFor } from "../helpers/wait";

let redis: TestRedis;
let pg: TestPostgres;
beforeAll(async () => {
  [redis, pg] = await Promise.all([startRedis(), startPostgres()]);
}, 60_000);
// Stopping waits for a killed PostgreSQL's backends to exit: longer than the default hook timeout.
afterAll(async () => {
  await Promise.allSettled([redis?.stop(), pg?.stop()]);
}, 30_000);

async function instance(prefix: string, databaseUrl: string, env: Record<string, string>): Promise<TestServer> {
  const config = { DATABASE_URL: databaseUrl, REDIS_URL: redis.url, REDIS_KEY_PREFIX: prefix, ...env };
  const database = await openPostgres({
    databaseUrl,
    databasePoolSize: 4,
    databaseStatementTimeoutMs: 5000,
    messageRetentionDays: 0,
  });
  const server = await startTestServer(config, (c, metrics) => {
    const logger = createLogger(c);
    return redisBackends(c, createRedisClients(c.redisUrl, { logger, metrics }), { logger, metrics, database });
  });
  await waitRedisUp(server);
  return server;
}

/** Two instances of one deployment, each test its own database and key prefix. */
async function pair(env: Record<string, string> = {}) {
  const prefix = redis.prefix();
  const url = await pg.database();
  const instances = (await Promise.all([instance(prefix, url, env), instance(prefix, url, env)])) as [
    TestServer,
    TestServer,
  ];
  const sql = new SQL({ url, max: 2 });
  return {
    instances,
    prefix,
    sql,
    stop: async () => {
      await Promise.all(instances.map((i) => i.stop()));
      await sql.close();
    },
  };
}

type Ack = { offset: number; id: string; epoch: string };

/** Sends `count` direct messages one after another; returns the acknowledgements. */
async function directs(from: TestClient, to: string, tag: string, count: number, timeoutMs = 3000): Promise<Ack[]> {
  const acks: Ack[] = [];
  for (let i = 0; i < count; i++) {
    const answer = await from.request(
      { type: "direct", to, text: `${tag} ${i}`, clientMsgId: `${tag}-${i}` },
      timeoutMs,
    );
    expect(answer).toMatchObject({ ok: true, for: "direct", to });
    acks.push({ offset: answer.offset, id: answer.id, epoch: answer.epoch });
  }
  return acks;
}

/** The stored entries of one inbox, in (epoch, offset) order. */
async function inboxRows(sql: SQL, owner: string) {
  const rows: { epoch: string; offset: string; id: string; sender: string; recipient: string }[] =
    await sql`SELECT epoch, "offset", id, sender, recipient FROM inbox_messages WHERE user_id = ${owner} ORDER BY epoch, "offset"`;
  return rows.map((r) => ({ epoch: r.epoch, offset: Number(r.offset), id: r.id, from: r.sender, to: r.recipient }));
}

async function inboxCount(sql: SQL, owner: string) {
  const [row] = await sql`SELECT count(*)::int AS n FROM inbox_messages WHERE user_id = ${owner}`;
  return (row as { n: number }).n;
}

/** Connects `name` to `server` and resumes its inbox; returns the answer and the replayed frames. */
async function resume(server: TestServer, name: string, lastOffset: number, epoch?: string) {
  const client = await server.connect(undefined, `user=${name}`);
  const answer = await client.request({ type: "inbox", lastOffset, ...(epoch && { epoch }) });
  expect(answer).toMatchObject({ ok: true, for: "inbox" });
  const replayed = client.all("direct").map((f) => ({ offset: f.offset, id: f.id, epoch: f.epoch }));
  client.close();
  return { answer, replayed };
}

describe("direct messages in PostgreSQL", () => {
  test("a direct message to an offline user is in PostgreSQL once; after Redis lost everything, the user still gets it on reconnect", async () => {
    const { instances, sql, stop } = await pair();
    try {
      const [a, b] = instances;
      const alice = await a.connect(undefined, "user=alice");
      const sent = await directs(alice, "bob", "dm", 5);
      // A resend of an acknowledged one is a duplicate: not a second row.
      const resent = await alice.request({ type: "direct", to: "bob", text: "dm 4", clientMsgId: "dm-4" });
      expect(resent).toMatchObject({ duplicate: true, id: sent[4]!.id });

      await waitFor(async () => (await inboxCount(sql, "bob")) === 5 && (await inboxCount(sql, "alice")) === 5, {
        timeoutMs: 10_000,
        what: "both inboxes in PostgreSQL",
      });
      const bobRows = await inboxRows(sql, "bob");
      expect(bobRows.map((r) => [r.offset, r.id, r.from, r.to])).toEqual(
        sent.map((s, i) => [i + 1, s.id, "alice", "bob"]),
      );
      const bobEpoch = bobRows[0]!.epoch;
      // The sender's own inbox holds the same messages, at its own offsets.
      expect((await inboxRows(sql, "alice")).map((r) => [r.offset, r.id, r.epoch])).toEqual(
        sent.map((s) => [s.offset, s.id, s.epoch]),
      );

      // Redis loses everything (a flush, a restart without its data).
      await redis.client().flushall();

      // Bob comes back on the other instance: every message, from PostgreSQL, in its epoch.
      const back = await resume(b, "bob", 0, bobEpoch);
      expect(back.answer).toMatchObject({ epoch: bobEpoch, offset: 5, recovered: true, replayed: 5 });
      expect(back.replayed).toEqual(sent.map((s, i) => ({ offset: i + 1, id: s.id, epoch: bobEpoch })));
      // A device that had the first two gets the rest.
      const partly = await resume(a, "bob", 2, bobEpoch);
      expect(partly.answer).toMatchObject({ recovered: true, replayed: 3 });
      expect(partly.replayed.map((r) => r.offset)).toEqual([3, 4, 5]);

      // The inbox continues its epoch and offsets: the next message is 6, stored once too.
      const more = await directs(await b.connect(undefined, "user=carol"), "bob", "later", 1);
      const live = await resume(a, "bob", 5, bobEpoch);
      expect(live.replayed).toEqual([{ offset: 6, id: expect.any(String), epoch: bobEpoch }]);
      await waitFor(async () => (await inboxCount(sql, "bob")) === 6, { timeoutMs: 10_000, what: "6 rows" });
      expect((await inboxRows(sql, "bob")).at(-1)).toMatchObject({ epoch: bobEpoch, offset: 6, from: "carol" });
      expect(more).toHaveLength(1);
    } finally {
      await stop();
    }
  }, 30_000);

  test("once in PostgreSQL the Redis inbox is trimmed to INBOX_SIZE; a user further behind is replayed from PostgreSQL, page by page", async () => {
    const { instances, prefix, sql, stop } = await pair({ INBOX_SIZE: "5" });
    try {
      const [a, b] = instances;
      const sender = await a.connect(undefined, "user=dan");
      const sent = await directs(sender, "erin", "t", 230);
      await waitFor(async () => (await inboxCount(sql, "erin")) === 230, { timeoutMs: 15_000, what: "230 rows" });
      await waitFor(async () => (await redis.client().xlen(`${prefix}{user:erin}:inbox:log`)) === 5, {
        timeoutMs: 5000,
        what: "the Redis inbox trimmed to 5",
      });

      const epoch = (await inboxRows(sql, "erin"))[0]!.epoch;
      // The first page (200 per answer) comes from PostgreSQL, the next one ends in Redis.
      const first = await resume(b, "erin", 0, epoch);
      expect(first.answer).toMatchObject({
        epoch,
        offset: 230,
        recovered: true,
        replayed: 200,
        more: true,
        through: 200,
      });
      expect(first.replayed.map((r) => r.offset)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
      const second = await resume(a, "erin", 200, epoch);
      expect(second.answer).toMatchObject({ offset: 230, recovered: true, replayed: 30 });
      expect(second.answer.more).toBeUndefined();
      expect([...first.replayed, ...second.replayed].map((r) => r.id)).toEqual(sent.map((s) => s.id));
    } finally {
      await stop();
    }
  }, 40_000);

  test("PostgreSQL SIGKILLed: direct messages go on, Redis keeps every one not yet stored, and each reaches PostgreSQL once after the restart", async () => {
    const { instances, prefix, sql, stop } = await pair({ INBOX_SIZE: "10" });
    try {
      const [a, b] = instances;
      const sender = await a.connect(undefined, "user=fay");
      const before = await directs(sender, "gus", "pre", 5);
      await waitFor(async () => (await inboxCount(sql, "gus")) === 5, { timeoutMs: 10_000, what: "5 rows" });

      await pg.kill();
      // Acknowledged while the database is down, through both instances.
      const other = await b.connect(undefined, "user=hal");
      const during = [...(await directs(sender, "gus", "out", 30)), ...(await directs(other, "gus", "out2", 30))];
      await waitFor(
        async () => {
          const text = await scrape(a.httpUrl);
          return (
            sample(text, "store_inbox_backlog_messages") >= 60 && sample(text, "store_inbox_write_lag_seconds") > 0
          );
        },
        { timeoutMs: 15_000, what: "the inbox backlog seen by the scan" },
      );
      // Not trimmed to INBOX_SIZE past what the database holds: the 60 it lacks all wait in Redis
      // (the 5 it has are beyond the newest 10, so gone), without a TTL.
      const log = await redis.client().xrange(`${prefix}{user:gus}:inbox:log`, "-", "+");
      expect(log.map(([id]) => id)).toEqual(Array.from({ length: 60 }, (_, i) => `${i + 6}-0`));
      expect(await redis.client().ttl(`${prefix}{user:gus}:inbox:log`)).toBe(-1);

      await pg.restart();
      await waitFor(async () => (await inboxCount(sql, "gus").catch(() => 0)) === 65, {
        timeoutMs: 20_000,
        what: "all 65 acknowledged direct messages in PostgreSQL",
      });
      const rows = await inboxRows(sql, "gus");
      const acked = [...before, ...during];
      // Exactly once: dense from 1, each acknowledged id once (the recipient's offsets are its own).
      expect(rows.map((r) => r.offset)).toEqual(Array.from({ length: 65 }, (_, i) => i + 1));
      expect(new Set(rows.map((r) => r.id))).toEqual(new Set(acked.map((s) => s.id)));
      expect(new Set(rows.map((r) => r.epoch)).size).toBe(1);
      // Caught up: the inbox is trimmed and expires again, and both instances see no backlog.
      await waitFor(async () => (await redis.client().xlen(`${prefix}{user:gus}:inbox:log`)) === 10, {
        timeoutMs: 5000,
        what: "the Redis inbox trimmed to 10",
      });
      expect(await redis.client().ttl(`${prefix}{user:gus}:inbox:log`)).toBeGreaterThan(0);
      for (const server of instances) {
        await waitFor(async () => sample(await scrape(server.httpUrl), "store_inbox_backlog_messages") === 0, {
          timeoutMs: 15_000,
          what: "inbox backlog 0",
        });
      }
    } finally {
      await stop();
    }
  }, 60_000);
  test("a burst of direct messages to a thousand new inboxes: each stored once, in its first epoch, while the persister inserts", async () => {
    // Each new inbox asks PostgreSQL for its head while the persister inserts on the same pool: the
    // mix that wedged a pooled connection with named prepared statements (see PostgresMessageStore).
    const url = await pg.database();
    const database = await PostgresMessageStore.open({ url, poolSize: 4, statementTimeoutMs: 5000 });
    const archive = new PostgresInboxArchive(database.sql, 5000);
    const keys = redisKeys(redis.prefix());
    const logger = createLogger({ logLevel: "error", logDir: "", instanceId: "t", color: "none", version: "t" });
    const persister = createInboxPersister(
      redis.client(),
      keys,
      archive,
      { instanceId: "t", inboxSize: 20, inboxTtlSeconds: 3600 },
      logger,
    );
    persister.start();
    const inbox = new RedisInboxStore(redis.client(), keys, {
      size: 20,
      ttlSeconds: 3600,
      dedupWindowSeconds: 60,
      // As the server's: a head that does not come starts a new epoch, which the test would see.
      writeBehind: { resume: (owner) => archive.head(owner).catch(() => undefined) },
    });
    try {
      const epochs = new Map<string, Set<string>>();
      let next = 0;
      const worker = async () => {
        while (next < 3000) {
          const i = next++;
          const message = {
            id: `d${i}`,
            from: `u${i % 1000}`,
            to: `u${(i * 7 + 1) % 1000}`,
            text: "x",
            ts: Date.now(),
            clientMsgId: `c${i}`,
          };
          for (const owner of [message.to, message.from]) {
            const { epoch } = await inbox.append(owner, message);
            epochs.set(owner, (epochs.get(owner) ?? new Set()).add(epoch));
          }
        }
      };
      await Promise.all(Array.from({ length: 16 }, worker));
      await waitFor(async () => persister.stats.persisted >= 6000, { timeoutMs: 20_000, what: "6000 entries stored" });
      const [row] =
        await database.sql`SELECT count(*)::int AS n, count(DISTINCT (user_id, id))::int AS d FROM inbox_messages`;
      expect(row).toEqual({ n: 6000, d: 6000 });
      expect([...epochs.values()].every((set) => set.size === 1)).toBe(true);
    } finally {
      await persister.stop();
      await database.close();
    }
  }, 60_000);
});

/** The read position PostgreSQL holds for a user in a room, if any. */
async function storedReadOffset(sql: SQL, userId: string, room: string): Promise<number | undefined> {
  const [row] = await sql`SELECT "offset" FROM read_positions WHERE user_id = ${userId} AND room = ${room}`;
  return row ? Number((row as { offset: string }).offset) : undefined;
}

describe("read positions in PostgreSQL", () => {
  test("a read position survives the loss of its Redis key: join answers it from PostgreSQL, and it never moves back", async () => {
    const { instances, prefix, sql, stop } = await pair();
    try {
      const [a, b] = instances;
      const writer = await a.connect(undefined, "user=poster");
      await writer.request({ type: "join", room: "rp" });
      for (let i = 0; i < 4; i++)
        await writer.request({ type: "message", room: "rp", text: `m${i}`, clientMsgId: `rp-${i}` });
      const phone = await a.connect(undefined, "user=ida");
      await phone.request({ type: "join", room: "rp" });
      expect((await phone.request({ type: "read", room: "rp", offset: 3 })).readOffset).toBe(3);
      await waitFor(async () => (await storedReadOffset(sql, "ida", "rp")) === 3, {
        timeoutMs: 5000,
        what: "the read position in PostgreSQL",
      });

      // Redis forgets it (expired after HISTORY_TTL without a read, or lost).
      await redis.client().del(`${prefix}{user:ida}:reads`);
      const laptop = await b.connect(undefined, "user=ida");
      expect(await laptop.request({ type: "join", room: "rp" })).toMatchObject({ offset: 4, readOffset: 3, unread: 1 });
      // An older read does not move it back, in Redis or in PostgreSQL.
      expect((await laptop.request({ type: "read", room: "rp", offset: 1 })).readOffset).toBe(3);
      expect((await laptop.request({ type: "read", room: "rp", offset: 4 })).readOffset).toBe(4);
      await waitFor(async () => (await storedReadOffset(sql, "ida", "rp")) === 4, {
        timeoutMs: 5000,
        what: "the newer read position in PostgreSQL",
      });
      await redis.client().del(`${prefix}{user:ida}:reads`);
      const tablet = await a.connect(undefined, "user=ida");
      expect(await tablet.request({ type: "join", room: "rp" })).toMatchObject({ readOffset: 4, unread: 0 });
    } finally {
      await stop();
    }
  }, 30_000);

  test("while PostgreSQL is down, a join whose read position Redis lost answers at once without it; reads reach PostgreSQL after the restart", async () => {
    const { instances, prefix, sql, stop } = await pair();
    try {
      const [a, b] = instances;
      const writer = await a.connect(undefined, "user=poster2");
      await writer.request({ type: "join", room: "rp2" });
      for (let i = 0; i < 3; i++)
        await writer.request({ type: "message", room: "rp2", text: `m${i}`, clientMsgId: `rp2-${i}` });
      const phone = await a.connect(undefined, "user=jo");
      await phone.request({ type: "join", room: "rp2" });

      await pg.kill();
      try {
        await redis.client().del(`${prefix}{user:jo}:reads`);
        const laptop = await b.connect(undefined, "user=jo");
        // Not held up by the database: answered well inside the 2 s this request allows.
        expect(await laptop.request({ type: "join", room: "rp2" }, 2000)).toMatchObject({
          offset: 3,
          readOffset: 0,
          unread: 3,
        });
        expect((await laptop.request({ type: "read", room: "rp2", offset: 2 }, 2000)).readOffset).toBe(2);
      } finally {
        await pg.restart();
      }
      // The read waited in the instance and reaches PostgreSQL once it answers.
      await waitFor(async () => (await storedReadOffset(sql, "jo", "rp2").catch(() => undefined)) === 2, {
        timeoutMs: 15_000,
        what: "the read position in PostgreSQL after the restart",
      });
    } finally {
      await stop();
    }
  }, 60_000);
});
