// Two instances on a real Redis and a real PostgreSQL, both started here: messages acknowledged
// after the Redis append reach PostgreSQL exactly once, in offset order, also across a SIGKILL of
// the database under load; history and join replays reach beyond the Redis window.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { SQL } from "bun";
import { createLogger } from "../../src/observability/logger";
import { createRedisClients } from "../../src/redis/clients";
import { openPostgres, redisBackends } from "../../src/server";
import { PostgresMessageStore } from "../../src/store/postgres";
import { freePort } from "../helpers/binary";
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
afterAll(async () => {
  await Promise.allSettled([redis?.stop(), pg?.stop()]);
});

async function instance(prefix: string, databaseUrl: string, env: Record<string, string> = {}): Promise<TestServer> {
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

async function pair(env: Record<string, string> = {}) {
  const prefix = redis.prefix();
  const url = await pg.database();
  // Both start at once: the migration runs once, under the advisory lock.
  const instances = await Promise.all([instance(prefix, url, env), instance(prefix, url, env)]);
  const sql = new SQL({ url, max: 2 });
  return {
    instances,
    sql,
    stop: async () => {
      await Promise.all(instances.map((i) => i.stop()));
      await sql.close();
    },
  };
}

type Ack = { room: string; offset: number; id: string };

/** Sends `count` messages from one client, `window` in flight at once; returns the acknowledgements. */
async function send(client: TestClient, room: string, tag: string, count: number, window = 20): Promise<Ack[]> {
  const acks: Ack[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const answer = await client.request(
        { type: "message", room, text: `${tag} ${i}`, clientMsgId: `${tag}-${i}` },
        20_000,
      );
      expect(answer.type).toBe("message_response");
      acks.push({ room, offset: answer.offset, id: answer.id });
    }
  };
  await Promise.all(Array.from({ length: window }, worker));
  return acks;
}

/** Every stored row of the rooms, per room in offset order. */
async function stored(sql: SQL, rooms: string[]) {
  const rows: { room: string; offset: string; id: string }[] =
    await sql`SELECT room, "offset", id FROM messages WHERE room IN ${sql(rooms)} ORDER BY room, "offset"`;
  const byRoom = new Map<string, { offset: number; id: string }[]>();
  for (const r of rows) {
    const list = byRoom.get(r.room) ?? [];
    list.push({ offset: Number(r.offset), id: r.id });
    byRoom.set(r.room, list);
  }
  return byRoom;
}

async function count(sql: SQL) {
  const [row] = await sql`SELECT count(*)::int AS n FROM messages`;
  return (row as { n: number }).n;
}

/** Every acknowledged message is stored once, each room dense from 1, ids matching the acks. */
function expectExactlyOnce(byRoom: Map<string, { offset: number; id: string }[]>, acks: Ack[]) {
  const acked = new Map<string, Ack[]>();
  for (const a of acks) acked.set(a.room, [...(acked.get(a.room) ?? []), a]);
  for (const [room, list] of acked) {
    const expected = list.sort((x, y) => x.offset - y.offset).map(({ offset, id }) => ({ offset, id }));
    expect(byRoom.get(room)).toEqual(expected);
    expect(expected.map((m) => m.offset)).toEqual(expected.map((_, i) => i + 1));
  }
}

describe("PostgreSQL write-behind", () => {
  test("10,000 messages in 50 rooms through two instances are in PostgreSQL exactly once, in offset order", async () => {
    const { instances, sql, stop } = await pair();
    try {
      const rooms = Array.from({ length: 50 }, (_, i) => `pg-room-${i}`);
      const clients = await Promise.all(
        rooms.map(async (room, i) => {
          const client = await instances[i % 2]!.connect(undefined, `user=writer${i}`);
          await client.request({ type: "join", room });
          return client;
        }),
      );
      const acks = (await Promise.all(clients.map((c, i) => send(c, rooms[i]!, `w${i}`, 200)))).flat();
      expect(acks.length).toBe(10_000);
      await waitFor(async () => (await count(sql)) === 10_000, { timeoutMs: 20_000, what: "10,000 rows" });
      expectExactlyOnce(await stored(sql, rooms), acks);
      // The two instances started at once migrated the schema once, under the advisory lock.
      const versions = await sql`SELECT version FROM schema_migrations ORDER BY version`;
      expect(versions.map((r: { version: number }) => r.version)).toEqual([1, 2]);
      // Both persisters agree nothing waits any more.
      for (const server of instances) {
        await waitFor(async () => sample(await scrape(server.httpUrl), "store_backlog_messages") === 0, {
          timeoutMs: 10_000,
          what: "backlog 0",
        });
      }
    } finally {
      await stop();
    }
  }, 60_000);

  test("history pages and join replays reach beyond the Redis window into PostgreSQL", async () => {
    const { instances, sql, stop } = await pair({ HISTORY_SIZE: "10" });
    try {
      const [a, b] = instances as [TestServer, TestServer];
      const writer = await a.connect(undefined, "user=old");
      const joined = await writer.request({ type: "join", room: "archive" });
      const acks = await send(writer, "archive", "h", 60, 1);
      await waitFor(async () => (await count(sql)) === 60, { timeoutMs: 10_000, what: "60 rows" });
      // The Redis log keeps the newest 10 only, once the rest is in the database.
      await waitFor(async () => (await redis.client().xlen(`${a.config.redisKeyPrefix}{room:archive}:log`)) === 10, {
        what: "log trimmed to the window",
      });

      const reader = await b.connect(undefined, "user=reader");
      const join = await reader.request({ type: "join", room: "archive", lastOffset: 5, epoch: joined.epoch });
      expect(join).toMatchObject({ recovered: true, offset: 60 });
      const replayed = reader.all("message").map((m) => m.offset);
      expect(replayed).toEqual(Array.from({ length: 55 }, (_, i) => i + 6));

      const pages: number[][] = [];
      let before: number | undefined;
      for (;;) {
        const page = await reader.request({ type: "history", room: "archive", limit: 25, ...(before && { before }) });
        pages.push(page.messages.map((m: { offset: number }) => m.offset));
        if (!page.hasMore) break;
        before = page.messages[0].offset;
      }
      expect(pages.reverse().flat()).toEqual(acks.map((x) => x.offset).sort((x, y) => x - y));
    } finally {
      await stop();
    }
  }, 30_000);

  test("a room whose Redis keys were lost starts a new epoch; the older epoch's rows stay as they were", async () => {
    const { instances, sql, stop } = await pair();
    try {
      const [a, b] = instances as [TestServer, TestServer];
      const writer = await a.connect(undefined, "user=epochs");
      const first = await writer.request({ type: "join", room: "lost" });
      const before = await send(writer, "lost", "e1", 5, 1);
      await waitFor(async () => (await count(sql)) === 5, { what: "5 rows" });
      // Redis loses the room (a flush, a restart without its data).
      const prefix = a.config.redisKeyPrefix;
      await redis.client().del(`${prefix}{room:lost}:meta`, `${prefix}{room:lost}:log`);
      const other = await b.connect(undefined, "user=epochs2");
      const second = await other.request({ type: "join", room: "lost" });
      expect(second.epoch).not.toBe(first.epoch);
      const after = await send(other, "lost", "e2", 3, 1);
      await waitFor(async () => (await count(sql)) === 8, { what: "8 rows" });
      const rows: { epoch: string; offset: string; id: string }[] =
        await sql`SELECT epoch, "offset", id FROM messages WHERE room = 'lost' ORDER BY epoch = ${first.epoch} DESC, "offset"`;
      expect(rows.slice(0, 5).map((r) => [r.epoch, Number(r.offset), r.id])).toEqual(
        before.map((m) => [first.epoch, m.offset, m.id]),
      );
      expect(rows.slice(5).map((r) => [r.epoch, Number(r.offset), r.id])).toEqual(
        after.sort((x, y) => x.offset - y.offset).map((m) => [second.epoch, m.offset, m.id]),
      );
    } finally {
      await stop();
    }
  }, 30_000);

  test("MESSAGE_RETENTION_DAYS deletes older messages only", async () => {
    const url = await pg.database();
    const store = await PostgresMessageStore.open({ url, poolSize: 2, statementTimeoutMs: 5000 });
    try {
      const day = 86_400_000;
      const message = (offset: number, ts: number) => ({
        epoch: "e",
        message: { room: "r", id: `m${offset}`, offset, from: "u", text: "t", ts, clientMsgId: `c${offset}` },
      });
      await store.insert([message(1, Date.now() - 10 * day), message(2, Date.now() - 8 * day), message(3, Date.now())]);
      expect(await store.expire(Date.now() - 9 * day)).toBe(1);
      expect((await store.after("r", "e", 0, 10, 10)).messages.map((m) => m.offset)).toEqual([2, 3]);
    } finally {
      await store.close();
    }
  });

  test("any text a client can send is stored as sent: quotes, backslashes, emoji, newlines; a lone surrogate as U+FFFD", async () => {
    const url = await pg.database();
    const store = await PostgresMessageStore.open({ url, poolSize: 2, statementTimeoutMs: 5000 });
    try {
      const texts = ['"quoted" and \\ and \\u0041', "ligne\nsuivante\t😀 é", '{"json": [1]}', "lone \ud800 surrogate"];
      const rows = texts.map((text, i) => ({
        epoch: "e",
        message: { room: "r'; --", id: `m${i}`, offset: i + 1, from: "ü", text, ts: 1000 + i, clientMsgId: `c${i}` },
      }));
      await store.insert(rows);
      await store.insert(rows); // a repeat is skipped
      const stored = (await store.after("r'; --", "e", 0, 10, 10)).messages;
      expect(stored.map((m) => m.text)).toEqual([...texts.slice(0, 3), "lone \ufffd surrogate"]);
      expect(stored.map((m) => [m.offset, m.from, m.ts])).toEqual(texts.map((_, i) => [i + 1, "ü", 1000 + i]));
    } finally {
      await store.close();
    }
  });

  test("an unreachable DATABASE_URL at start: exit 4 and one line naming the database, not its password", async () => {
    const port = freePort();
    const proc = Bun.spawn([process.execPath, "run", "src/index.ts"], {
      cwd: join(import.meta.dir, "..", ".."),
      env: {
        PATH: process.env.PATH ?? "",
        HOST: "127.0.0.1",
        PORT: String(freePort()),
        REDIS_URL: redis.url,
        DATABASE_URL: `postgres://chat:s3cret@127.0.0.1:${port}/chat`,
      },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
    expect(code).toBe(4);
    const lines = stderr.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toStartWith(`error: cannot open the message database postgres://127.0.0.1:${port}/chat: `);
    expect(stderr).not.toContain("s3cret");
  }, 30_000);

  test("PostgreSQL SIGKILLed for 30 s under load: chat goes on, the backlog shows and drains, nothing is lost", async () => {
    const { instances, sql, stop } = await pair();
    const rooms = Array.from({ length: 10 }, (_, i) => `outage-${i}`);
    try {
      const clients = await Promise.all(
        rooms.map(async (room, i) => {
          const client = await instances[i % 2]!.connect(undefined, `user=loud${i}`);
          await client.request({ type: "join", room });
          return client;
        }),
      );
      // Steady load: each room one message every 50 ms (200 a second in all), until told to stop.
      const acks: Ack[] = [];
      let sending = true;
      const load = Promise.all(
        clients.map(async (client, i) => {
          for (let k = 0; sending; k++) {
            const answer = await client.request(
              { type: "message", room: rooms[i], text: `load ${k}`, clientMsgId: `l${i}-${k}` },
              10_000,
            );
            expect(answer.type).toBe("message_response");
            acks.push({ room: rooms[i]!, offset: answer.offset, id: answer.id });
            await Bun.sleep(50);
          }
        }),
      );
      await waitFor(() => acks.length >= 200, { timeoutMs: 10_000, what: "load running" });

      await pg.kill();
      const killedAt = Date.now();
      const ackedBefore = acks.length;
      const [a] = instances as [TestServer, TestServer];
      // Acknowledgements go on; the instances see the database down and the backlog and lag grow.
      await waitFor(
        async () => {
          const text = await scrape(a.httpUrl);
          return sample(text, "store_database_up") === 0 && sample(text, "store_write_lag_seconds") > 5;
        },
        { timeoutMs: 30_000, what: "lag past 5 s while the database is down" },
      );
      const health = (await (await fetch(`${a.httpUrl}/health`)).json()) as { database: string };
      expect(health.database).toBe("down");
      expect((await fetch(`${a.httpUrl}/health/ready`)).status).toBe(200);
      await Bun.sleep(Math.max(0, 30_000 - (Date.now() - killedAt))); // the outage lasts 30 s
      expect(acks.length).toBeGreaterThan(ackedBefore + 1000);
      const backlog = Math.max(
        ...(await Promise.all(instances.map(async (i) => sample(await scrape(i.httpUrl), "store_backlog_messages")))),
      );
      expect(backlog).toBeGreaterThan(1000);

      await pg.restart();
      sending = false;
      await load;
      // Everything acknowledged arrives, once; the lag returns to near zero on both instances.
      await waitFor(async () => (await count(sql).catch(() => 0)) === acks.length, {
        timeoutMs: 20_000,
        what: `all ${acks.length} acknowledged messages in PostgreSQL`,
      });
      expectExactlyOnce(await stored(sql, rooms), acks);
      for (const server of instances) {
        await waitFor(
          async () => {
            const text = await scrape(server.httpUrl);
            return (
              sample(text, "store_backlog_messages") === 0 &&
              sample(text, "store_write_lag_seconds") < 1 &&
              sample(text, "store_database_up") === 1
            );
          },
          { timeoutMs: 15_000, what: "backlog drained and lag near zero" },
        );
      }
    } finally {
      await stop();
    }
  }, 90_000);
});
