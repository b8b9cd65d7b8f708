// The backends every contract suite runs against: the in-memory default and Redis; history also
// against the in-memory hot history in front of a SQLite database.
import { afterAll, beforeAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Redis from "ioredis";
import { MemoryBackplane, MemoryHub } from "../../src/backplane/memory";
import { RedisBackplane } from "../../src/backplane/redis";
import { MemoryDedupStore } from "../../src/dedup/memory";
import { RedisDedupStore } from "../../src/dedup/redis";
import { DurableHistoryStore } from "../../src/history/durable";
import { MemoryHistoryStore } from "../../src/history/memory";
import { RedisHistoryStore } from "../../src/history/redis";
import { createLogger } from "../../src/observability/logger";
import { createMetrics } from "../../src/observability/metrics";
import { MemoryPresenceStore } from "../../src/presence/memory";
import { RedisPresenceStore } from "../../src/presence/redis";
import { redisKeys } from "../../src/redis/keys";
import { MemorySessionStore } from "../../src/sessions/memory";
import { RedisSessionStore } from "../../src/sessions/redis";
import { SqliteMessageStore } from "../../src/store/sqlite";
import { startRedis, type TestRedis } from "../helpers/redis";

let redis: TestRedis | undefined;
const connections: Redis[] = [];

export function useRedis() {
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    for (const c of connections) c.disconnect();
    await redis?.stop();
  });
}

function connection() {
  const c = new Redis(redis!.url);
  connections.push(c);
  return c;
}

const logger = createLogger({ logLevel: "error", logDir: "", instanceId: "contract", color: "none", version: "test" });
const metrics = () =>
  createMetrics({ version: "t", color: "none", instanceId: "contract", maxConnections: 1, redisUrl: "" });

export interface Factory {
  name: string;
  /** Whether its history keeps every message (a database behind the hot window), not only the last historySize. */
  keepsEverything?: boolean;
  /** `dedupWindowSeconds` defaults to 300. */
  history(options: {
    historySize: number;
    ttlSeconds: number;
    dedupWindowSeconds?: number;
  }): import("../../src/history/history").HistoryStore;
  /** Two history stores seen from two instances of one deployment. */
  historyPair(options: {
    historySize: number;
    ttlSeconds: number;
  }): [import("../../src/history/history").HistoryStore, import("../../src/history/history").HistoryStore];
  dedup(windowSeconds: number): import("../../src/dedup/dedup").DedupStore;
  sessions(): import("../../src/sessions/sessions").SessionStore;
  /** Two stores seen from two instances of one deployment. */
  presencePair(
    ttlSeconds: number,
  ): [import("../../src/presence/presence").PresenceStore, import("../../src/presence/presence").PresenceStore];
  /** Backplanes of `n` instances connected to each other. */
  backplanes(n: number): Promise<import("../../src/backplane/backplane").Backplane[]>;
}

let ids = 0;

/** A Redis history store with the connection and keys it uses, to set up what another release wrote. */
export function redisHistoryWithKeys(options: { historySize: number; ttlSeconds: number; dedupWindowSeconds: number }) {
  const client = connection();
  const keys = redisKeys(redis!.prefix());
  return { history: new RedisHistoryStore(client, keys, options), client, keys };
}

export const memory: Factory = {
  name: "memory",
  history: (o) => new MemoryHistoryStore({ dedupWindowSeconds: 300, ...o }),
  historyPair: (o) => {
    const shared = new MemoryHistoryStore({ dedupWindowSeconds: 300, ...o });
    return [shared, shared];
  },
  dedup: (w) => new MemoryDedupStore(w),
  sessions: () => new MemorySessionStore(),
  presencePair: () => {
    const shared = new MemoryPresenceStore();
    return [shared, shared];
  },
  backplanes: async (n) => {
    const hub = new MemoryHub();
    return Array.from({ length: n }, () => new MemoryBackplane(`m${++ids}`, hub));
  },
};

export const redisFactory: Factory = {
  name: "redis",
  history: (o) => new RedisHistoryStore(connection(), redisKeys(redis!.prefix()), { dedupWindowSeconds: 300, ...o }),
  historyPair: (o) => {
    const keys = redisKeys(redis!.prefix());
    const make = () => new RedisHistoryStore(connection(), keys, { dedupWindowSeconds: 300, ...o });
    return [make(), make()];
  },
  dedup: (w) => new RedisDedupStore(connection(), redisKeys(redis!.prefix()), w),
  sessions: () => new RedisSessionStore(connection(), redisKeys(redis!.prefix())),
  presencePair: (ttl) => {
    const keys = redisKeys(redis!.prefix());
    const make = () => new RedisPresenceStore(connection(), keys, { instanceId: `i${++ids}`, ttlSeconds: ttl, logger });
    return [make(), make()];
  },
  backplanes: async (n) => {
    const keys = redisKeys(redis!.prefix());
    const planes = Array.from(
      { length: n },
      () =>
        new RedisBackplane({
          instanceId: `r${++ids}`,
          publisher: connection(),
          subscriber: connection(),
          keys,
          metrics: metrics(),
          logger,
        }),
    );
    // ioredis reports "ready" asynchronously; publishing before it is ready is dropped by design.
    for (const c of connections) if (c.status !== "ready") await new Promise((r) => c.once("ready", r));
    return planes;
  },
};

export const factories = [memory, redisFactory];

const dataDirs: string[] = [];
afterAll(() => {
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
});

/** The in-memory hot history in front of a SQLite database in a fresh directory. */
function sqliteHistory(o: { historySize: number; ttlSeconds: number; dedupWindowSeconds?: number }) {
  const dir = mkdtempSync(join(tmpdir(), "chat-contract-"));
  dataDirs.push(dir);
  const store = SqliteMessageStore.open(dir);
  const hot = new MemoryHistoryStore({ dedupWindowSeconds: 300, ...o, resume: (room) => store.head(room) });
  return new DurableHistoryStore(hot, store);
}

export const sqliteFactory: Factory = {
  ...memory,
  name: "sqlite",
  keepsEverything: true,
  history: sqliteHistory,
  historyPair: (o) => {
    const shared = sqliteHistory(o);
    return [shared, shared];
  },
};

/** The history contract also runs against SQLite (the other contracts have no SQLite backend). */
export const historyFactories = [memory, sqliteFactory, redisFactory];
