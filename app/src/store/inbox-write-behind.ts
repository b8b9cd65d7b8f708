import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { Logger } from "../observability/logger";
import type { RedisCommands } from "../redis/clients";
import type { RedisKeys } from "../redis/keys";
import type { PostgresInboxArchive } from "./postgres-inbox";
import { type PersistKeys, RedisPersister } from "./write-behind";

// The direct-message inboxes are written behind into the database by the same machinery as the
// room logs (RedisPersister): an inbox is laid out like a room (a meta hash {epoch, offset,
// persisted}, a stream of `<offset>-0` entries, all under the owner's hash tag), so only the keys
// differ. A persister of its own (own dirty set, scan pattern, leases) keeps rooms and inboxes from
// delaying each other and gives each its own metrics.

/** The inbox keys under the names the persister reads. */
export function inboxPersistKeys(keys: RedisKeys): PersistKeys {
  return {
    roomMeta: keys.inboxMeta,
    roomLog: keys.inboxLog,
    roomPersistLease: keys.inboxPersistLease,
    persistDirty: keys.inboxPersistDirty,
    roomMetaPattern: keys.inboxMetaPattern,
  };
}

/** The owner of an inbox meta key `<prefix>{user:<id>}:inbox:meta`. */
export function inboxOwnerOf(key: string): string | undefined {
  const start = key.indexOf("{user:");
  if (start < 0 || !key.endsWith("}:inbox:meta")) return undefined;
  return key.slice(start + 6, -12);
}

export interface InboxPersisterOptions {
  instanceId: string;
  /** INBOX_SIZE: the stream is trimmed to it once its entries are in the database. */
  inboxSize: number;
  /** INBOX_TTL: the stream expires after it once its entries are in the database. */
  inboxTtlSeconds: number;
  redisUp?: () => boolean;
  scanIntervalMs?: number;
}

/**
 * Drains every inbox's entries not yet in the database, on any number of instances, with the
 * guarantees of RedisPersister: exactly once (unique by user, epoch and offset; `persisted` moves
 * only after the commit), nothing lost while the database is down (the stream keeps everything
 * above `persisted`), one writer per inbox at a time (its lease).
 */
export function createInboxPersister(
  redis: RedisCommands,
  keys: RedisKeys,
  archive: PostgresInboxArchive,
  options: InboxPersisterOptions,
  logger: Logger,
): RedisPersister {
  return new RedisPersister(
    redis,
    inboxPersistKeys(keys),
    archive,
    {
      instanceId: options.instanceId,
      historySize: options.inboxSize,
      historyTtlSeconds: options.inboxTtlSeconds,
      redisUp: options.redisUp,
      scanIntervalMs: options.scanIntervalMs,
      ownerOf: inboxOwnerOf,
    },
    logger.child({ log: "inbox" }),
  );
}

/**
 * Exports the inbox write-behind beside the room one (see observePersister), as series of their
 * own: `store_inbox_*`. Backlog and lag are every inbox's as this instance's scan saw them: take
 * the max over instances. The MessageStoreWriteBehindLag alert watches both lags.
 */
export function observeInboxPersister(persister: RedisPersister, registry: Registry) {
  const seconds = new Histogram({
    name: "store_inbox_write_behind_seconds",
    help: "Duration of a write-behind insert of direct messages into the database",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  persister.onCommit = (_messages, s) => seconds.observe(s);
  new Counter({
    name: "store_inbox_persisted_messages_total",
    help: "Direct-message inbox entries this instance wrote behind into the database",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(persister.stats.persisted);
    },
  });
  new Counter({
    name: "store_inbox_write_behind_errors_total",
    help: "Inbox write-behind passes that failed on the database or Redis (retried; senders are not affected)",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(persister.stats.errors);
    },
  });
  new Counter({
    name: "store_inbox_lost_messages_total",
    help: "Inbox entries missing from Redis before they were written to the database (Redis lost them)",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(persister.stats.lost);
    },
  });
  new Gauge({
    name: "store_inbox_backlog_messages",
    help: "Inbox entries acknowledged in Redis and not yet in the database, over every inbox",
    registers: [registry],
    collect() {
      this.set(persister.backlog());
    },
  });
  new Gauge({
    name: "store_inbox_write_lag_seconds",
    help: "Age of the oldest inbox entry not yet in the database (0 when none waits)",
    registers: [registry],
    collect() {
      this.set(persister.lagSeconds());
    },
  });
}
