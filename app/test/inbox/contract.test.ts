// The inbox contract, against each driver directly: memory, SQLite (a real file, through the writer
// thread), Redis (a real server), and Redis written behind into a real PostgreSQL (a persister
// running). Over sockets the same guarantees are checked in inbox.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type Redis from "ioredis";
import { ArchivedInboxStore } from "../../src/inbox/archived";
import type { InboxStore } from "../../src/inbox/inbox";
import { MemoryInboxStore } from "../../src/inbox/memory";
import { RedisInboxStore } from "../../src/inbox/redis";
import { SqliteInboxStore } from "../../src/inbox/sqlite";
import { createLogger } from "../../src/observability/logger";
import type { DirectMessage } from "../../src/protocol/server-frames";
import { redisKeys } from "../../src/redis/keys";
import { createInboxPersister } from "../../src/store/inbox-write-behind";
import { PostgresMessageStore } from "../../src/store/postgres";
import { PostgresInboxArchive } from "../../src/store/postgres-inbox";
import { SqliteMessageStore } from "../../src/store/sqlite";
import type { RedisPersister } from "../../src/store/write-behind";
import { startPostgres, type TestPostgres } from "../helpers/postgres";
import { startRedis, type TestRedis } from "../helpers/redis";

const SIZE = 4;
const TTL = 600;
const WINDOW = 300;
let redis: TestRedis;
let client: Redis;
let pg: TestPostgres;
/** One database per inbox store created: like a Redis prefix, each test's inboxes are its own. */
const databases: PostgresMessageStore[] = [];
let used = 0;
const dir = mkdtempSync(join(tmpdir(), "chat-inbox-contract-"));
const sqlite: SqliteMessageStore[] = [];
const persisters: RedisPersister[] = [];
const logger = createLogger({ logLevel: "error", logDir: "", instanceId: "contract", color: "none", version: "test" });
beforeAll(async () => {
  [redis, pg] = await Promise.all([startRedis(), startPostgres()]);
  client = redis.client();
  for (let i = 0; i < 5; i++)
    databases.push(
      await PostgresMessageStore.open({ url: await pg.database(), poolSize: 1, statementTimeoutMs: 5000 }),
    );
}, 60_000);
afterAll(async () => {
  for (const store of sqlite) await store.close();
  await Promise.all(persisters.map((p) => p.stop()));
  await Promise.all(databases.map((d) => d.close()));
  await Promise.allSettled([redis?.stop(), pg?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
/** `keepsEverything`: a database behind keeps what the Redis inbox drops past its size. */
const drivers: { name: string; keepsEverything?: boolean; create(): InboxStore }[] = [
  { name: "memory", create: () => new MemoryInboxStore({ size: SIZE, ttlSeconds: TTL }) },
  {
    name: "sqlite",
    create: () => {
      const store = SqliteMessageStore.open(join(dir, String(++n)), { inboxSize: SIZE });
      sqlite.push(store);
      return new SqliteInboxStore(store, SIZE);
    },
  },
  {
    name: "redis",
    create: () =>
      new RedisInboxStore(client, redisKeys(redis.prefix()), {
        size: SIZE,
        ttlSeconds: TTL,
        dedupWindowSeconds: WINDOW,
      }),
  },
  {
    name: "redis + postgresql",
    keepsEverything: true,
    create: () => {
      const keys = redisKeys(redis.prefix());
      const database = databases[used++];
      if (!database) throw new Error("more inbox stores than databases: open more in beforeAll");
      const archive = new PostgresInboxArchive(database.sql, 5000);
      const persister = createInboxPersister(
        client,
        keys,
        archive,
        { instanceId: "contract", inboxSize: SIZE, inboxTtlSeconds: TTL },
        logger,
      );
      persister.start();
      persisters.push(persister);
      const hot = new RedisInboxStore(client, keys, {
        size: SIZE,
        ttlSeconds: TTL,
        dedupWindowSeconds: WINDOW,
        writeBehind: { resume: (owner) => archive.head(owner) },
      });
      return new ArchivedInboxStore(hot, archive);
    },
  },
];

const dm = (from: string, to: string, text: string, clientMsgId = crypto.randomUUID() as string): DirectMessage => ({
  id: crypto.randomUUID(),
  from,
  to,
  text,
  ts: Date.now(),
  clientMsgId,
});

describe.each(drivers)("inbox contract ($name)", (driver) => {
  test("offsets start at 1 and are dense per inbox; since gives the head and what came after", async () => {
    const inbox = driver.create();
    const empty = await inbox.since("bob", undefined, undefined, 100);
    expect(empty).toMatchObject({ offset: 0, messages: [], complete: true });
    const a = await inbox.append("bob", dm("alice", "bob", "one"));
    const b = await inbox.append("bob", dm("carol", "bob", "two"));
    const own = await inbox.append("alice", dm("alice", "bob", "one"));
    expect([a.entry.offset, b.entry.offset, own.entry.offset]).toEqual([1, 2, 1]);
    expect(a.epoch).toBe(empty.epoch);
    const after = await inbox.since("bob", 1, a.epoch, 100);
    expect(after).toMatchObject({ epoch: a.epoch, offset: 2, complete: true });
    expect(after.messages.map((m) => [m.offset, m.from, m.text])).toEqual([[2, "carol", "two"]]);
    expect(await inbox.since("bob", 2, a.epoch, 100)).toMatchObject({ messages: [], complete: true });
  });

  test("of concurrent appends of one message exactly one is kept; every caller gets that entry", async () => {
    const inbox = driver.create();
    const message = dm("alice", "bob", "once", "same");
    const results = await Promise.all(
      [0, 1, 2].map(() => inbox.append("bob", { ...message, id: crypto.randomUUID() })),
    );
    expect(results.filter((r) => !r.duplicate)).toHaveLength(1);
    expect(new Set(results.map((r) => `${r.entry.id}/${r.entry.offset}`)).size).toBe(1);
    expect((await inbox.since("bob", 0, undefined, 100)).messages).toHaveLength(1);
  });

  test("an inbox keeps its newest entries up to its size (with a database, all); a resume from further back is not complete", async () => {
    const inbox = driver.create();
    let epoch = "";
    for (let i = 1; i <= 6; i++) epoch = (await inbox.append("bob", dm("alice", "bob", `m${i}`))).epoch;
    const all = await inbox.since("bob", 0, epoch, 100);
    if (driver.keepsEverything) {
      // Redis keeps what the database lacks, the database what Redis dropped: all six, whenever asked.
      expect(all.messages.map((m) => m.offset)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(all.complete).toBe(true);
      return;
    }
    expect(all.messages.map((m) => m.offset)).toEqual([3, 4, 5, 6]);
    expect(all.complete).toBe(false);
    expect((await inbox.since("bob", 2, epoch, 100)).complete).toBe(true);
  });

  test("since gives at most `limit` entries, oldest first", async () => {
    const inbox = driver.create();
    for (let i = 1; i <= 3; i++) await inbox.append("bob", dm("alice", "bob", `m${i}`));
    const page = await inbox.since("bob", 0, undefined, 2);
    expect(page.messages.map((m) => m.offset)).toEqual([1, 2]);
    expect(page).toMatchObject({ offset: 3, complete: true });
  });

  test("a resume from another epoch gets every kept entry, not complete", async () => {
    const inbox = driver.create();
    await inbox.append("bob", dm("alice", "bob", "m1"));
    const other = await inbox.since("bob", 1, "another-epoch", 100);
    expect(other.messages.map((m) => m.text)).toEqual(["m1"]);
    expect(other.complete).toBe(false);
  });
});

test("Redis inbox: its keys carry the inbox TTL, the dedup key the dedup window, and all share the user's hash tag", async () => {
  const prefix = redis.prefix();
  const keys = redisKeys(prefix);
  const inbox = new RedisInboxStore(client, keys, { size: SIZE, ttlSeconds: TTL, dedupWindowSeconds: WINDOW });
  await inbox.append("ttl-bob", dm("alice", "ttl-bob", "hi", "c1"));
  for (const key of [keys.inboxMeta("ttl-bob"), keys.inboxLog("ttl-bob")]) {
    const ttl = await client.ttl(key);
    expect(ttl).toBeGreaterThan(TTL - 5);
    expect(ttl).toBeLessThanOrEqual(TTL);
  }
  const dedup = keys.inboxDedup("ttl-bob", "alice", "ttl-bob", "c1");
  expect(await client.ttl(dedup)).toBeGreaterThan(WINDOW - 5);
  for (const key of await client.keys(`${prefix}*`)) expect(key).toContain("{user:ttl-bob}:inbox:");
});

test("memory inbox: one idle past its TTL starts a new epoch; past the inbox count the least recently written is forgotten", async () => {
  let now = 1_000_000;
  const inbox = new MemoryInboxStore({ size: SIZE, ttlSeconds: 60, maxInboxes: 2 }, () => now);
  const first = await inbox.append("bob", dm("alice", "bob", "m1"));
  now += 61_000;
  const later = await inbox.since("bob", 1, first.epoch, 100);
  expect(later.epoch).not.toBe(first.epoch);
  expect(later).toMatchObject({ offset: 0, messages: [], complete: false });

  const kept = await inbox.append("u1", dm("alice", "u1", "a"));
  await inbox.append("u2", dm("alice", "u2", "b"));
  await inbox.append("u3", dm("alice", "u3", "c"));
  expect((await inbox.since("u1", 0, kept.epoch, 100)).epoch).not.toBe(kept.epoch);
});

test("SQLite inbox: the retention deletes old entries with room messages; the head stays, so offsets never restart", async () => {
  const store = SqliteMessageStore.open(join(dir, "retention"), { inboxSize: SIZE });
  sqlite.push(store);
  const inbox = new SqliteInboxStore(store, SIZE);
  const { epoch } = await inbox.append("bob", { ...dm("alice", "bob", "old"), ts: Date.now() - 10_000 });
  expect(await store.expire(Date.now() - 5_000)).toBe(1);
  expect(await inbox.since("bob", 0, epoch, 100)).toMatchObject({ offset: 1, messages: [], complete: false });
  expect((await inbox.append("bob", dm("alice", "bob", "new"))).entry.offset).toBe(2);
});
