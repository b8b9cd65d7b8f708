import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { FastHistogram } from "../observability/fast-histogram";
import type { PostgresMessageStore } from "./postgres";
import type { SqliteMessageStore } from "./sqlite";
import type { RedisPersister } from "./write-behind";

/** Exports the message database's commits, errors, queue and retention on a metrics registry. */
export function observeSqliteStore(store: SqliteMessageStore, registry: Registry) {
  // Observed on the event loop after every commit, hundreds a second under load: the lean histogram.
  const batch = new FastHistogram(
    "store_write_batch_messages",
    "Messages committed per database transaction",
    [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 4096],
    registry,
  );
  const seconds = new FastHistogram(
    "store_write_seconds",
    "Duration of a database commit of messages, fsync included",
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registry,
  );
  store.onCommit = (messages, s) => {
    batch.observe(messages);
    seconds.observe(s);
  };
  new Counter({
    name: "store_write_errors_total",
    help: "Database commits of messages that failed (their senders got `unavailable`)",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(store.stats.errors);
    },
  });
  new Gauge({
    name: "store_queued_messages",
    help: "Messages waiting for the next database commit",
    registers: [registry],
    collect() {
      this.set(store.stats.queued);
    },
  });
  new Counter({
    name: "store_retention_deleted_total",
    help: "Messages deleted from the database by MESSAGE_RETENTION_DAYS",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(store.stats.expired);
    },
  });
}

/**
 * Exports the write-behind into PostgreSQL: what waits (backlog, lag), what is written (batches,
 * delays) and what fails. Backlog and lag are every room's, as this instance last saw them (its
 * scan reads every room's meta), so take the max over instances, not the sum.
 */
export function observePersister(persister: RedisPersister, database: PostgresMessageStore, registry: Registry) {
  const batch = new Histogram({
    name: "store_write_behind_batch_messages",
    help: "Messages written behind per database insert",
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
    registers: [registry],
  });
  const seconds = new Histogram({
    name: "store_write_behind_seconds",
    help: "Duration of a write-behind insert into the database",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  const delay = new Histogram({
    name: "store_persist_delay_seconds",
    help: "Time from a message's acknowledgement (its ts) to its commit in the database",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [registry],
  });
  persister.onCommit = (messages, s, delays) => {
    batch.observe(messages);
    seconds.observe(s);
    for (const d of delays) delay.observe(d);
  };
  new Counter({
    name: "store_write_behind_errors_total",
    help: "Write-behind passes that failed on the database or Redis (retried; senders are not affected)",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(persister.stats.errors);
    },
  });
  new Counter({
    name: "store_persisted_messages_total",
    help: "Messages this instance wrote behind into the database",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(persister.stats.persisted);
    },
  });
  new Counter({
    name: "store_lost_messages_total",
    help: "Messages missing from a room's Redis log before they were written to the database (Redis lost them)",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(persister.stats.lost);
    },
  });
  new Gauge({
    name: "store_backlog_messages",
    help: "Messages acknowledged in Redis and not yet in the database, over every room",
    registers: [registry],
    collect() {
      this.set(persister.backlog());
    },
  });
  new Gauge({
    name: "store_write_lag_seconds",
    help: "Age of the oldest message not yet in the database (0 when none waits)",
    registers: [registry],
    collect() {
      this.set(persister.lagSeconds());
    },
  });
  new Gauge({
    name: "store_database_up",
    help: "1 when the last write-behind insert into the database succeeded",
    registers: [registry],
    collect() {
      this.set(persister.stats.databaseUp ? 1 : 0);
    },
  });
  new Counter({
    name: "store_retention_deleted_total",
    help: "Messages deleted from the database by MESSAGE_RETENTION_DAYS",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(database.expired);
    },
  });
}
