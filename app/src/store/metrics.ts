import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { SqliteMessageStore } from "./sqlite";

/** Exports the message database's commits, errors, queue and retention on a metrics registry. */
export function observeSqliteStore(store: SqliteMessageStore, registry: Registry) {
  const batch = new Histogram({
    name: "store_write_batch_messages",
    help: "Messages committed per database transaction",
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 4096],
    registers: [registry],
  });
  const seconds = new Histogram({
    name: "store_write_seconds",
    help: "Duration of a database commit of messages, fsync included",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
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
