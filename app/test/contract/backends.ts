// The backends every contract suite runs against: the in-memory default, one Redis, and a Redis
// Cluster of 3 masters and 3 replicas (keys tagged by room and user, sharded pub/sub); history also
// against the in-memory hot history in front of a SQLite database.
import { afterAll, beforeAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Redis from "ioredis";
import { MemoryBackplane, MemoryHub } from "../../src/backplane/memory";
import { RedisBackplane } from "../../src/backplane/redis";
import type { EnvelopeVersions } from "../../src/backplane/versions";
import { DurableHistoryStore } from "../../src/history/durable";
import { MemoryHistoryStore } from "../../src/history/memory";
import { RedisHistoryStore } from "../../src/history/redis";
import { createLogger } from "../../src/observability/logger";
import { createMetrics } from "../../src/observability/metrics";
import { MemoryPresenceStore } from "../../src/presence/memory";
import { RedisPresenceStore } from "../../src/presence/redis";
import type { RedisClients, RedisCommands } from "../../src/redis/clients";
import { createClusterClients } from "../../src/redis/cluster";
import { parseClusterNodes } from "../../src/redis/cluster-nodes";
import { type KeyLayout, redisKeys } from "../../src/redis/keys";
import { MemorySessionStore } from "../../src/sessions/memory";
import { RedisSessionStore } from "../../src/sessions/redis";
import { SqliteMessageStore } from "../../src/store/sqlite";
import { startRedis, type TestRedis } from "../helpers/redis";
import { startRedisCluster, type TestCluster } from "../helpers/redis-cluster";

let redis: TestRedis | undefined;
let cluster: TestCluster | undefined;
const connections: Redis[] = [];
const clusterClients: RedisClients[] = [];
/** The stores' cluster connection, opened once the cluster is up. */
let clusterCommands: RedisCommands;

export function useRedis() {
  beforeAll(async () => {
    [redis, cluster] = await Promise.all([startRedis(), startRedisCluster()]);
    clusterCommands = (await clusterConnection()).commands;
  }, 60_000);
  afterAll(async () => {
    for (const c of connections) c.disconnect();
    await Promise.all(clusterClients.map((c) => c.close(500)));
    await Promise.all([redis?.stop(), cluster?.stop()]);
  });
}

/** Clients of the cluster as the server opens them, ready. */
async function clusterConnection(): Promise<RedisClients> {
  const clients = createClusterClients(parseClusterNodes(cluster!.seeds), { logger, metrics: metrics() });
  clusterClients.push(clients);
  const deadline = Date.now() + 10_000;
  while (clients.status() !== "up") {
    if (Date.now() > deadline) throw new Error("the cluster clients never came up");
    await Bun.sleep(20);
  }
  return clients;
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
  sessions(): import("../../src/sessions/sessions").SessionStore;
  /** Two stores seen from two instances of one deployment. */
  presencePair(
    ttlSeconds: number,
  ): [import("../../src/presence/presence").PresenceStore, import("../../src/presence/presence").PresenceStore];
  /** Backplanes of `n` instances connected to each other. */
  backplanes(n: number): Promise<import("../../src/backplane/backplane").Backplane[]>;
}

let ids = 0;

export const memory: Factory = {
  name: "memory",
  history: (o) => new MemoryHistoryStore({ dedupWindowSeconds: 300, ...o }),
  historyPair: (o) => {
    const shared = new MemoryHistoryStore({ dedupWindowSeconds: 300, ...o });
    return [shared, shared];
  },
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

/** Backplanes of a deployment where every instance reads v2 (envelope.test.ts covers v1 and mixed peers). */
const V2: EnvelopeVersions = { version: () => 2, close: async () => {} };

export const redisFactory: Factory = {
  name: "redis",
  history: (o) => new RedisHistoryStore(connection(), redisKeys(redis!.prefix()), { dedupWindowSeconds: 300, ...o }),
  historyPair: (o) => {
    const keys = redisKeys(redis!.prefix());
    const make = () => new RedisHistoryStore(connection(), keys, { dedupWindowSeconds: 300, ...o });
    return [make(), make()];
  },
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
          versions: V2,
          metrics: metrics(),
          logger,
        }),
    );
    // ioredis reports "ready" asynchronously; publishing before it is ready is dropped by design.
    for (const c of connections) if (c.status !== "ready") await new Promise((r) => c.once("ready", r));
    return planes;
  },
};

export const clusterFactory: Factory = {
  name: "redis cluster",
  history: (o) =>
    new RedisHistoryStore(clusterCommands, redisKeys(cluster!.prefix(), "cluster"), { dedupWindowSeconds: 300, ...o }),
  historyPair: (o) => {
    const keys = redisKeys(cluster!.prefix(), "cluster");
    const make = () => new RedisHistoryStore(clusterCommands, keys, { dedupWindowSeconds: 300, ...o });
    return [make(), make()];
  },
  sessions: () => new RedisSessionStore(clusterCommands, redisKeys(cluster!.prefix(), "cluster")),
  presencePair: (ttl) => {
    const keys = redisKeys(cluster!.prefix(), "cluster");
    const make = () =>
      new RedisPresenceStore(clusterCommands, keys, { instanceId: `i${++ids}`, ttlSeconds: ttl, logger });
    return [make(), make()];
  },
  backplanes: async (n) => {
    const keys = redisKeys(cluster!.prefix(), "cluster");
    return Promise.all(
      Array.from({ length: n }, async () => {
        const clients = await clusterConnection();
        return new RedisBackplane({
          instanceId: `rc${++ids}`,
          publisher: clients.publisher,
          subscriber: clients.subscriber,
          keys,
          versions: V2,
          metrics: metrics(),
          logger,
          isUp: () => clients.status() === "up",
        });
      }),
    );
  },
};

export const factories = [memory, redisFactory, clusterFactory];

/** The two Redis layouts, for tests of what only Redis does. */
export const redisLayouts: KeyLayout[] = ["single", "cluster"];

/** A Redis history store with the connection and keys it uses, to set up what another release wrote. */
export function redisHistoryWithKeys(
  options: { historySize: number; ttlSeconds: number; dedupWindowSeconds: number },
  layout: KeyLayout = "single",
) {
  const client: RedisCommands = layout === "single" ? connection() : clusterCommands;
  const keys = redisKeys((layout === "single" ? redis! : cluster!).prefix(), layout);
  return { history: new RedisHistoryStore(client, keys, options), client, keys };
}

/** The cluster connection the stores use, for a test's own commands. */
export function clusterClient(): RedisCommands {
  return clusterCommands;
}

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
export const historyFactories = [memory, sqliteFactory, redisFactory, clusterFactory];
