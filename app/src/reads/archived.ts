import { Counter, Gauge, type Registry } from "prom-client";
import { furthest, type ReadPosition, type ReadPositionStore } from "./reads";

/** The database the read positions are copied into. */
export interface ReadArchive {
  /** Stores positions (one per user and room), each only forward within its epoch. */
  upsertReads(batch: readonly { userId: string; room: string; position: ReadPosition }[]): Promise<void>;
  readPosition(userId: string, room: string): Promise<ReadPosition | undefined>;
}

export interface ReadCopyStats {
  /** Positions waiting for the next database write. */
  queued: number;
  /** Positions written to the database. */
  written: number;
  /** Positions given up because the queue was full while the database was down. */
  dropped: number;
  /** Database writes that failed (retried). */
  errors: number;
}

/** Positions written per statement. */
const BATCH = 1000;
/** Pause between writes: the reads of a moment coalesce into one statement. */
const FLUSH_MS = 200;
const MAX_BACKOFF_MS = 5000;

/**
 * Read positions in Redis, copied into the database by a bounded asynchronous write, and read from
 * the database when Redis no longer has them (its key expired after HISTORY_TTL without a read, or
 * was lost). A `read` is answered from Redis; its position then waits in a queue keyed by user and
 * room (a newer read of the same room replaces it, so a busy reader costs one row per flush), and
 * is upserted in batches every FLUSH_MS. Why not a write-behind through Redis like messages: a
 * position is a value that only moves forward, not a log; losing the last few hundred milliseconds
 * of them with a crashed instance costs a user a slightly high unread count once, never a message.
 * Bounded: at most `maxQueued` positions wait while the database is down; past that the oldest are
 * dropped (counted), and Redis still holds them.
 */
export class ArchivedReadPositionStore implements ReadPositionStore {
  readonly stats: ReadCopyStats = { queued: 0, written: 0, dropped: 0, errors: 0 };
  private readonly queue = new Map<string, { userId: string; room: string; position: ReadPosition }>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private writing: Promise<void> | undefined;
  private backoffMs = 0;
  private closed = false;

  constructor(
    readonly hot: ReadPositionStore,
    readonly archive: ReadArchive,
    private readonly maxQueued = 100_000,
  ) {}

  async advance(userId: string, room: string, position: ReadPosition) {
    const stored = await this.hot.advance(userId, room, position);
    this.enqueue(userId, room, stored);
    return stored;
  }

  async get(userId: string, room: string) {
    const hot = await this.hot.get(userId, room);
    if (hot) return hot;
    const queued = this.queue.get(key(userId, room));
    if (queued) return queued.position;
    let stored: ReadPosition | undefined;
    try {
      stored = await this.archive.readPosition(userId, room);
    } catch {
      return undefined;
    }
    // Back into Redis, so that a read below it does not move the shared position backwards there.
    if (stored) this.hot.advance(userId, room, stored).catch(() => {});
    return stored;
  }

  private enqueue(userId: string, room: string, position: ReadPosition) {
    const k = key(userId, room);
    const waiting = this.queue.get(k);
    this.queue.delete(k);
    this.queue.set(k, { userId, room, position: waiting ? furthest(waiting.position, position) : position });
    if (this.queue.size > this.maxQueued) {
      this.queue.delete(this.queue.keys().next().value!);
      this.stats.dropped++;
    }
    this.stats.queued = this.queue.size;
    this.schedule(FLUSH_MS);
  }

  private schedule(ms: number) {
    if (this.timer || this.writing || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.writing = this.flush().finally(() => {
        this.writing = undefined;
        if (this.queue.size > 0) this.schedule(this.backoffMs || FLUSH_MS);
      });
    }, ms);
  }

  /** Writes what waits, BATCH at a time; a failed batch goes back in unless a newer read replaced it. */
  private async flush() {
    while (this.queue.size > 0) {
      const batch = [...this.queue.values()].slice(0, BATCH);
      for (const row of batch) this.queue.delete(key(row.userId, row.room));
      try {
        await this.archive.upsertReads(batch);
      } catch {
        this.stats.errors++;
        for (const row of batch) {
          const k = key(row.userId, row.room);
          const newer = this.queue.get(k);
          this.queue.set(k, newer ? { ...row, position: furthest(row.position, newer.position) } : row);
        }
        this.stats.queued = this.queue.size;
        this.backoffMs = Math.min(MAX_BACKOFF_MS, Math.max(100, this.backoffMs * 2));
        return;
      }
      this.backoffMs = 0;
      this.stats.written += batch.length;
      this.stats.queued = this.queue.size;
    }
  }

  /** Writes what waits (one attempt), then stops copying. */
  async flushAndStop() {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.writing;
    if (this.queue.size > 0) await this.flush();
  }

  async close() {
    await this.flushAndStop();
    await this.hot.close();
  }
}

function key(userId: string, room: string) {
  return `${userId}\u0000${room}`;
}

/** Exports the copy of read positions into the database. */
export function observeReadCopy(store: ArchivedReadPositionStore, registry: Registry) {
  new Gauge({
    name: "store_read_positions_queued",
    help: "Read positions waiting to be copied into the database",
    registers: [registry],
    collect() {
      this.set(store.stats.queued);
    },
  });
  new Counter({
    name: "store_read_positions_dropped_total",
    help: "Read positions not copied into the database: the queue was full while it was down (Redis keeps them)",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(store.stats.dropped);
    },
  });
  new Counter({
    name: "store_read_positions_write_errors_total",
    help: "Writes of read positions into the database that failed (retried)",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(store.stats.errors);
    },
  });
}
