import { join } from "node:path";
import type { Backplane } from "./backplane/backplane";
import { MemoryBackplane, type MemoryHub } from "./backplane/memory";
import { RedisBackplane } from "./backplane/redis";
import { RedisEnvelopeVersions } from "./backplane/versions";
import type { Config } from "./config";
import { ArchivedHistoryStore } from "./history/archived";
import { DEFAULT_RELEASE_BYTES_PER_TURN, DurableHistoryStore } from "./history/durable";
import type { HistoryStore } from "./history/history";
import { MemoryHistoryStore } from "./history/memory";
import { RedisHistoryStore } from "./history/redis";
import { ArchivedInboxStore } from "./inbox/archived";
import type { InboxStore } from "./inbox/inbox";
import { MemoryInboxStore } from "./inbox/memory";
import { RedisInboxStore } from "./inbox/redis";
import { SqliteInboxStore } from "./inbox/sqlite";
import type { Logger } from "./observability/logger";
import type { Metrics } from "./observability/metrics";
import { MemoryPresenceStore } from "./presence/memory";
import type { PresenceStore } from "./presence/presence";
import { RedisPresenceStore } from "./presence/redis";
import { ArchivedReadPositionStore, observeReadCopy } from "./reads/archived";
import { MemoryReadPositionStore } from "./reads/memory";
import type { ReadPositionStore } from "./reads/reads";
import { RedisReadPositionStore } from "./reads/redis";
import { SqliteReadPositionStore } from "./reads/sqlite";
import type { RedisClients } from "./redis/clients";
import { withFallback } from "./redis/fallback";
import { redisKeys } from "./redis/keys";
import { refuseWhileDown } from "./redis/unavailable";
import { MemorySessionStore } from "./sessions/memory";
import { RedisSessionStore } from "./sessions/redis";
import type { SessionStore } from "./sessions/sessions";
import { createInboxPersister, observeInboxPersister } from "./store/inbox-write-behind";
import { observePersister, observeSqliteStore } from "./store/metrics";
import { PostgresMessageStore } from "./store/postgres";
import { PostgresInboxArchive } from "./store/postgres-inbox";
import { SQLITE_FILE, SqliteMessageStore } from "./store/sqlite";
import { RedisPersister } from "./store/write-behind";

/** The swappable backends. Memory ones are the defaults; the composition root may pass Redis ones. */
export interface Backends {
  backplane: Backplane;
  history: HistoryStore;
  /** Each user's read position per room. */
  reads: ReadPositionStore;
  /** Each user's direct messages, for delivery on reconnect. */
  inbox: InboxStore;
  presence: PresenceStore;
  sessions: SessionStore;
  /** Whether a Redis URL is configured (health then reports its state). */
  usesRedis: boolean;
  /** Where room messages are kept beyond the hot history: `sqlite`, `postgres`, or `memory` (nowhere else). */
  store: "sqlite" | "postgres" | "memory";
  /** With PostgreSQL: whether its last write (or probe) succeeded. */
  database?: () => "up" | "down";
  /**
   * Closes the backplane and stores, then the Redis connections. Bounded: it waits at most
   * CLOSE_DEADLINE_MS for a Redis that does not answer, then cuts the connections; when Redis was
   * down or did not answer, one log line names what it gave up on.
   */
  close(): Promise<void>;
}

/** Longest wait for Redis at shutdown: with the listener's bound, well inside DRAIN_TIMEOUT + 5 s. */
export const CLOSE_DEADLINE_MS = 2000;

type StoreConfig = Pick<
  Config,
  | "instanceId"
  | "historySize"
  | "historyMaxBytes"
  | "historyTtlSeconds"
  | "dedupWindowSeconds"
  | "presenceTtlSeconds"
  | "redisKeyPrefix"
  | "inboxSize"
  | "inboxTtlSeconds"
>;

function memoryStores(config: StoreConfig) {
  return {
    history: new MemoryHistoryStore({
      historySize: config.historySize,
      maxBytes: config.historyMaxBytes,
      ttlSeconds: config.historyTtlSeconds,
      dedupWindowSeconds: config.dedupWindowSeconds,
    }),
    inbox: new MemoryInboxStore({ size: config.inboxSize, ttlSeconds: config.inboxTtlSeconds }),
    ...fallbackStores(),
  };
}

/** The in-memory twins the Redis stores fall back to (history has none). */
function fallbackStores() {
  return {
    reads: new MemoryReadPositionStore(),
    presence: new MemoryPresenceStore(),
    sessions: new MemorySessionStore(),
  };
}

/**
 * Everything in this process. A shared hub lets several instances in one process talk (tests). The
 * in-memory history reports what it holds on `metrics` (a Redis history is measured by Redis itself).
 */
export function memoryBackends(config: StoreConfig, deps: { metrics: Metrics }, hub?: MemoryHub): Backends {
  const backplane = new MemoryBackplane(config.instanceId, hub);
  const stores = memoryStores(config);
  stores.history.observe(deps.metrics.registry);
  const close = async () =>
    void (await Promise.allSettled([backplane, ...Object.values(stores)].map((b) => b.close())));
  return { backplane, ...stores, usesRedis: false, store: "memory", close };
}

/**
 * Bytes of committed messages released per event-loop turn (see DurableHistoryStore): an eighth of
 * what a socket may buffer, and no less than the 32 KB measured safe at the smallest limit. Half of
 * the default 1 MiB let a member reading at full speed lose a few frames of a 9 MB burst (the
 * slow-consumer test); an eighth did not, and still releases a commit of 512 short messages at once.
 */
function releaseBytesPerTurn(backpressureLimitBytes: number) {
  return Math.max(DEFAULT_RELEASE_BYTES_PER_TURN, Math.floor(backpressureLimitBytes / 8));
}

/** The message database could not be opened or migrated; the server cannot start. */
export class StoreOpenError extends Error {}

/**
 * One instance with its messages in SQLite under DATA_DIR: the in-memory history serves the newest
 * messages of each room and continues each room's epoch and offsets from the database, which holds
 * all of them (see DurableHistoryStore).
 */
export function sqliteBackends(
  config: StoreConfig &
    Pick<Config, "dataDir" | "messageRetentionDays" | "backpressureLimitBytes" | "sqliteSynchronous">,
  deps: { metrics: Metrics; logger: Logger },
): Backends {
  let store: SqliteMessageStore;
  try {
    store = SqliteMessageStore.open(config.dataDir, {
      retentionDays: config.messageRetentionDays,
      inboxSize: config.inboxSize,
      synchronous: config.sqliteSynchronous,
    });
  } catch (error) {
    throw new StoreOpenError(
      `cannot open the message database ${join(config.dataDir, SQLITE_FILE)}: ${(error as Error).message}`,
    );
  }
  observeSqliteStore(store, deps.metrics.registry);
  let lastWarning = 0;
  store.onError = (error) => {
    if (Date.now() - lastWarning < 10_000) return;
    lastWarning = Date.now();
    deps.logger.error("message database write failed; senders get unavailable", { error: error.message });
  };
  const hot = new MemoryHistoryStore({
    historySize: config.historySize,
    maxBytes: config.historyMaxBytes,
    ttlSeconds: config.historyTtlSeconds,
    dedupWindowSeconds: config.dedupWindowSeconds,
    resume: (room) => store.head(room),
  });
  hot.observe(deps.metrics.registry);
  // The dedup window outlives a restart: a resend of a message stored just before it is a duplicate.
  for (const message of store.storedSince(Date.now() - config.dedupWindowSeconds * 1000)) hot.rememberStored(message);
  const backplane = new MemoryBackplane(config.instanceId);
  const stores = {
    ...fallbackStores(),
    history: new DurableHistoryStore(hot, store, {
      releaseBytesPerTurn: releaseBytesPerTurn(config.backpressureLimitBytes),
    }),
    reads: new SqliteReadPositionStore(store),
    inbox: new SqliteInboxStore(store, config.inboxSize),
  };
  const close = async () =>
    void (await Promise.allSettled([backplane, ...Object.values(stores)].map((b) => b.close())));
  return { backplane, ...stores, usesRedis: false, store: "sqlite", close };
}

/**
 * Connects to PostgreSQL and migrates its schema (under an advisory lock: instances starting at once
 * migrate one at a time). The server does not start without it: a release must not serve with a
 * schema it has not checked. Once started, a database outage is absorbed by the Redis logs.
 */
export async function openPostgres(
  config: Pick<Config, "databaseUrl" | "databasePoolSize" | "databaseStatementTimeoutMs" | "messageRetentionDays">,
): Promise<PostgresMessageStore> {
  try {
    return await PostgresMessageStore.open({
      url: config.databaseUrl,
      poolSize: config.databasePoolSize,
      statementTimeoutMs: config.databaseStatementTimeoutMs,
      retentionDays: config.messageRetentionDays,
    });
  } catch (error) {
    const url = new URL(config.databaseUrl);
    throw new StoreOpenError(
      `cannot open the message database postgres://${url.host}${url.pathname}: ${(error as Error).message}`,
    );
  }
}

/**
 * Redis for everything shared. History has no in-memory twin: while Redis is down or hung, its calls
 * are refused with `unavailable`, so a message is acknowledged only once it is in the shared history
 * (and published from there to every instance); so are inbox calls (direct messages), each deduplicated
 * in the step that stores it. Presence, sessions and read positions hold nothing a client was
 * promised to keep, so they fall back to memory and this instance keeps serving joins' presence,
 * resumes and read positions of its own clients.
 */
export function redisBackends(
  config: StoreConfig,
  clients: RedisClients,
  deps: { metrics: Metrics; logger: Logger; database?: PostgresMessageStore },
): Backends {
  const { metrics, logger, database } = deps;
  const keys = redisKeys(config.redisKeyPrefix, clients.layout);
  const { commands, publisher, subscriber } = clients;
  const local = fallbackStores();
  const isUp = (key?: string) => clients.status(key) === "up";
  const guard = { isUp, ...deps };
  // A room's messages and joins, and a user's direct messages, need only their own shard of a
  // cluster: each call names its room (a draft's room) or its inbox's owner first.
  const roomKey = (args: unknown[]) => {
    const first = args[0] as string | { room?: string } | undefined;
    const room = typeof first === "string" ? first : first?.room;
    return room === undefined ? undefined : keys.roomMeta(room);
  };
  const inboxKey = (args: unknown[]) => (typeof args[0] === "string" ? keys.inboxMeta(args[0]) : undefined);
  const versions = new RedisEnvelopeVersions(commands, keys, { instanceId: config.instanceId, logger });
  const history = new RedisHistoryStore(commands, keys, {
    historySize: config.historySize,
    ttlSeconds: config.historyTtlSeconds,
    dedupWindowSeconds: config.dedupWindowSeconds,
    publishAs: config.instanceId,
    envelopeVersion: () => versions.version(),
    writeBehind: database !== undefined,
    onEpochReset: (room, epoch, seen) => {
      metrics.epochResets.inc();
      logger.warn("redis holds fewer messages of a room than this instance saw; the room starts a new epoch", {
        room,
        epoch,
        seenEpoch: seen.epoch,
        seenOffset: seen.offset,
      });
    },
  });
  const backplane = new RedisBackplane({
    instanceId: config.instanceId,
    publisher,
    subscriber,
    keys,
    isUp,
    versions,
    observe: (room, epoch, offset) => history.observe(room, epoch, offset),
    ...deps,
  });
  // With a database, messages are written behind from the room logs (acknowledged after the Redis
  // append), and reads beyond the Redis window come from the database.
  const persister = database
    ? new RedisPersister(
        commands,
        keys,
        database,
        {
          instanceId: config.instanceId,
          historySize: config.historySize,
          historyTtlSeconds: config.historyTtlSeconds,
          redisUp: isUp,
        },
        logger,
      )
    : undefined;
  if (persister) observePersister(persister, database!, metrics.registry);
  persister?.start();
  // Direct messages the same way from the inboxes, and read positions copied behind Redis.
  const archive = database ? new PostgresInboxArchive(database.sql, database.statementTimeoutMs) : undefined;
  const inboxPersister = archive
    ? createInboxPersister(
        commands,
        keys,
        archive,
        {
          instanceId: config.instanceId,
          inboxSize: config.inboxSize,
          inboxTtlSeconds: config.inboxTtlSeconds,
          redisUp: isUp,
        },
        logger,
      )
    : undefined;
  if (inboxPersister) observeInboxPersister(inboxPersister, metrics.registry);
  inboxPersister?.start();
  const redisReads = new RedisReadPositionStore(commands, keys, config.historyTtlSeconds);
  const readCopy = archive ? new ArchivedReadPositionStore(redisReads, archive) : undefined;
  if (readCopy) observeReadCopy(readCopy, metrics.registry);
  let headWarnedAt = Number.NEGATIVE_INFINITY;
  const redisInbox = new RedisInboxStore(commands, keys, {
    size: config.inboxSize,
    ttlSeconds: config.inboxTtlSeconds,
    dedupWindowSeconds: config.dedupWindowSeconds,
    ...(archive && {
      writeBehind: {
        // A database that does not answer costs an inbox whose Redis keys were lost its epoch, not the message.
        resume: (owner: string) =>
          archive.head(owner).catch((error: Error) => {
            // At most one line per 10 s: an outage meets every new inbox.
            if (Date.now() - headWarnedAt >= 10_000) {
              headWarnedAt = Date.now();
              logger.warn("the message database did not give an inbox's head; the inbox starts a new epoch", {
                user: owner,
                error: error.message,
              });
            }
            return undefined;
          }),
      },
    }),
  });
  const stores = {
    history: refuseWhileDown<HistoryStore>(
      "history",
      database ? new ArchivedHistoryStore(history, database) : history,
      { ...guard, keyOf: roomKey },
    ),
    // Like history: a direct message is acknowledged only once it is in Redis, so no memory twin.
    inbox: refuseWhileDown<InboxStore>("inbox", archive ? new ArchivedInboxStore(redisInbox, archive) : redisInbox, {
      ...guard,
      keyOf: inboxKey,
    }),
    presence: withFallback<PresenceStore>(
      "presence",
      new RedisPresenceStore(commands, keys, {
        instanceId: config.instanceId,
        ttlSeconds: config.presenceTtlSeconds,
        logger,
      }),
      local.presence,
      { ...guard, primaryOnly: ["onExpired"] },
    ),
    sessions: withFallback<SessionStore>("sessions", new RedisSessionStore(commands, keys), local.sessions, guard),
    reads: withFallback<ReadPositionStore>("reads", readCopy ?? redisReads, local.reads, guard),
  };
  return {
    backplane,
    ...stores,
    usesRedis: true,
    store: database ? "postgres" : "memory",
    ...(persister && { database: () => (persister.stats.databaseUp ? "up" : "down") }),
    close: async () => {
      const started = Date.now();
      const gaveUp: string[] = [];
      // The persisters stop after their pass; what is left waits in the logs for another instance.
      // The read positions still queued are written before the pool closes (Redis holds them anyway).
      // All at once, so that together they take at most a quarter of the deadline.
      const stopping: [string, Promise<void> | undefined][] = [
        ["persister", persister?.stop()],
        ["inbox persister", inboxPersister?.stop()],
        ["read positions", readCopy?.flushAndStop()],
      ];
      await Promise.all(
        stopping.map(async ([name, stop]) => {
          if (stop && !(await within(stop, CLOSE_DEADLINE_MS / 4))) gaveUp.push(name);
        }),
      );
      await database?.close().catch(() => {});
      const closing = Promise.allSettled([versions, backplane, ...Object.values(stores)].map((b) => b.close()));
      if (!(await within(closing, CLOSE_DEADLINE_MS / 2))) gaveUp.push("store close");
      gaveUp.push(...(await clients.close(Math.max(0, CLOSE_DEADLINE_MS - (Date.now() - started)))));
      if (gaveUp.length > 0)
        logger.warn("redis did not answer at shutdown; closed its connections without waiting", {
          gaveUp: gaveUp.join(", "),
          waitedMs: Date.now() - started,
        });
    },
  };
}

/** Whether `promise` settles within `ms`. */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const settled = await Promise.race([promise.then(() => true), late]);
  clearTimeout(timer);
  return settled;
}
