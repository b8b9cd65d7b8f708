import type { Backplane } from "./backplane/backplane";
import { MemoryBackplane, type MemoryHub } from "./backplane/memory";
import { RedisBackplane } from "./backplane/redis";
import type { Config } from "./config";
import type { DedupStore } from "./dedup/dedup";
import { MemoryDedupStore } from "./dedup/memory";
import { RedisDedupStore } from "./dedup/redis";
import type { HistoryStore } from "./history/history";
import { MemoryHistoryStore } from "./history/memory";
import { RedisHistoryStore } from "./history/redis";
import type { Logger } from "./observability/logger";
import type { Metrics } from "./observability/metrics";
import { MemoryPresenceStore } from "./presence/memory";
import type { PresenceStore } from "./presence/presence";
import { RedisPresenceStore } from "./presence/redis";
import type { RedisClients } from "./redis/clients";
import { withFallback } from "./redis/fallback";
import { redisKeys } from "./redis/keys";
import { MemorySessionStore } from "./sessions/memory";
import { RedisSessionStore } from "./sessions/redis";
import type { SessionStore } from "./sessions/sessions";

/** The swappable backends. Memory ones are the defaults; the composition root may pass Redis ones. */
export interface Backends {
  backplane: Backplane;
  history: HistoryStore;
  presence: PresenceStore;
  sessions: SessionStore;
  dedup: DedupStore;
  /** Whether a Redis URL is configured (health then reports its state). */
  usesRedis: boolean;
  close(): Promise<void>;
}

type StoreConfig = Pick<
  Config,
  "instanceId" | "historySize" | "historyTtlSeconds" | "dedupWindowSeconds" | "presenceTtlSeconds" | "redisKeyPrefix"
>;

function memoryStores(config: StoreConfig) {
  return {
    history: new MemoryHistoryStore({
      historySize: config.historySize,
      ttlSeconds: config.historyTtlSeconds,
      dedupWindowSeconds: config.dedupWindowSeconds,
    }),
    presence: new MemoryPresenceStore(),
    sessions: new MemorySessionStore(),
    dedup: new MemoryDedupStore(config.dedupWindowSeconds),
  };
}

/** Everything in this process. A shared hub lets several instances in one process talk (tests). */
export function memoryBackends(config: StoreConfig, hub?: MemoryHub): Backends {
  const backplane = new MemoryBackplane(config.instanceId, hub);
  const stores = memoryStores(config);
  return { backplane, ...stores, usesRedis: false, close: async () => void (await backplane.close()) };
}

/** Redis for everything shared, each store with an in-memory twin for when Redis is unreachable. */
export function redisBackends(
  config: StoreConfig,
  clients: RedisClients,
  deps: { metrics: Metrics; logger: Logger },
): Backends {
  const keys = redisKeys(config.redisKeyPrefix);
  const { commands, subscriber } = clients;
  const local = memoryStores(config);
  const guard = { isUp: () => commands.status === "ready", ...deps };
  return {
    backplane: new RedisBackplane({ instanceId: config.instanceId, publisher: commands, subscriber, keys, ...deps }),
    history: withFallback<HistoryStore>(
      "history",
      new RedisHistoryStore(commands, keys, {
        historySize: config.historySize,
        ttlSeconds: config.historyTtlSeconds,
        dedupWindowSeconds: config.dedupWindowSeconds,
        publishAs: config.instanceId,
      }),
      local.history,
      guard,
    ),
    presence: withFallback<PresenceStore>(
      "presence",
      new RedisPresenceStore(commands, keys, {
        instanceId: config.instanceId,
        ttlSeconds: config.presenceTtlSeconds,
        logger: deps.logger,
      }),
      local.presence,
      { ...guard, primaryOnly: ["onExpired"] },
    ),
    sessions: withFallback<SessionStore>("sessions", new RedisSessionStore(commands, keys), local.sessions, guard),
    dedup: withFallback<DedupStore>(
      "dedup",
      new RedisDedupStore(commands, keys, config.dedupWindowSeconds),
      local.dedup,
      guard,
    ),
    usesRedis: true,
    close: () => clients.close(),
  };
}
