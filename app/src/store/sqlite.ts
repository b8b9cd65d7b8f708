import { Database, type Statement } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { RoomHead } from "../history/history";
import { type DirectMessage, frames, type RoomMessage } from "../protocol/server-frames";
import { migrate } from "./migrations";
import type { MessageStore, StoredPage } from "./store";
import { FIELDS_PER_DIRECT, type WriterReply, type WriterRequest } from "./writer-protocol";

/** The database file under DATA_DIR. */
export const SQLITE_FILE = "messages.sqlite";

/** How long a write waits for a lock held by another connection (a backup, a second process). */
const BUSY_TIMEOUT_MS = 5000;
/** Rows deleted per retention step; the event loop runs between steps. */
const RETENTION_CHUNK = 5000;
/** Most messages one commit carries; a longer queue is committed in several. */
const MAX_BATCH = 4096;

export interface SqliteStoreStats {
  /** Committed transactions, and the messages they carried. */
  batches: number;
  messages: number;
  /** Failed commits (every write of the batch was refused). */
  errors: number;
  /** Messages the retention deleted. */
  expired: number;
  /** Messages waiting for the next commit. */
  queued: number;
}

/**
 * Messages committed together. Every write of a batch shares its promise, and `writeThen`'s
 * callbacks are called in one loop: one allocation per batch, not per message, on the hot path.
 */
class Batch {
  /**
   * The messages as the inside of a JSON array (FIELDS_PER_MESSAGE values each): joined from the
   * `message` frames the fan-out uses, so that the event loop encodes nothing more per message.
   */
  rows = "";
  readonly reads: unknown[] = [];
  /** Inbox appends (FIELDS_PER_DIRECT values each), and once committed their results. */
  readonly directs: unknown[] = [];
  appended: [offset: number, id: string, ts: number, duplicate: 0 | 1][] = [];
  /** A retention step riding on this batch: delete messages older than this (ms since the epoch). */
  expireBefore: number | undefined;
  /** Messages the retention step deleted, once committed. */
  deleted = 0;
  count = 0;
  started = 0;
  /** `writeThen`'s callbacks, in the order of the writes. */
  readonly callbacks: ((error?: Error) => void)[] = [];
  readonly done: Promise<void>;
  resolve!: () => void;
  reject!: (error: Error) => void;

  constructor() {
    this.done = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // A refused batch whose writers all went away is not an unhandled rejection.
    this.done.catch(() => {});
  }
}

/**
 * The writer thread's file. The compiled binary embeds it as an entrypoint of its own
 * (scripts/build.ts) under its path from the app's root, which a relative string path names there;
 * from source it is the file beside this one.
 */
const WRITER_URL = import.meta.url.includes("/$bunfs/")
  ? "./src/store/sqlite-writer.ts"
  : new URL("./sqlite-writer.ts", import.meta.url).href;

/** Bun's Worker: it can stop keeping the process alive while idle. */
type RefWorker = Worker & { ref(): void; unref(): void };

export interface SqliteStoreOptions {
  /** MESSAGE_RETENTION_DAYS; 0 or none keeps messages forever. */
  retentionDays?: number;
  /** INBOX_SIZE. */
  inboxSize?: number;
  /**
   * SQLITE_SYNCHRONOUS. full (the default): a write resolves once its commit is on disk, so an
   * acknowledged message survives a power cut. normal: once the commit is in the write-ahead log in
   * the operating system's cache, with no fsync per commit (only at checkpoints): it survives a
   * crash or SIGKILL of the process, not a crash of the machine.
   */
  synchronous?: "full" | "normal";
}

type Row = { offset: number; id: string; sender: string; text: string; ts: number; client_msg_id: string };

/**
 * Messages in an embedded SQLite file (WAL, synchronous FULL unless told NORMAL). Writes made in
 * one turn of the event loop form one batch, committed in one transaction by a writer thread
 * (sqlite-writer.ts), so neither the inserts nor the fsync take time from the sockets; each write
 * resolves once its transaction is on disk. Reads run here, on a connection of their own, and see
 * every write that resolved. One process owns the file; it is not shared between instances.
 */
export class SqliteMessageStore implements MessageStore {
  readonly db: Database;
  readonly stats: SqliteStoreStats = { batches: 0, messages: 0, errors: 0, expired: 0, queued: 0 };
  /** Called after each commit with its size and duration, and with the error of a failed one. */
  onCommit?: (messages: number, seconds: number) => void;
  onError?: (error: Error) => void;
  /** The batch taking writes, the full ones waiting to be sent, and the one the writer holds. */
  private open: Batch | undefined;
  private readonly full: Batch[] = [];
  private sent: Batch | undefined;
  /** The writer has not answered `open` yet. */
  private opening = false;
  private flushScheduled = false;
  /** The epoch of the last message queued, and it as JSON: most messages are of the epoch before. */
  private lastEpoch = "";
  private lastEpochJson = '""';
  private writer: RefWorker | undefined;
  private readonly selectHead: Statement<{ epoch: string; head: number }>;
  private readonly selectAfter: Statement<Row>;
  private readonly selectBefore: Statement<Row>;
  private readonly selectSince: Statement<Row & { room: string }>;
  private retention: ReturnType<typeof setInterval> | undefined;
  private closed = false;
  private drained: (() => void) | undefined;

  /** Entries each direct-message inbox keeps (INBOX_SIZE). */
  private readonly inboxSize: number;
  /** The writer's `PRAGMA synchronous` (SQLITE_SYNCHRONOUS). */
  private readonly synchronous: "full" | "normal";

  /** Opens (creating when missing) `<dataDir>/messages.sqlite` and migrates it; throws when it cannot. */
  static open(dataDir: string, options: SqliteStoreOptions = {}) {
    mkdirSync(dataDir, { recursive: true });
    return new SqliteMessageStore(new Database(join(dataDir, SQLITE_FILE), { create: true, strict: true }), options);
  }

  constructor(db: Database, options: SqliteStoreOptions = {}) {
    this.db = db;
    this.inboxSize = options.inboxSize ?? 1000;
    this.synchronous = options.synchronous ?? "full";
    db.run(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    // Switching a new file to WAL can be refused at once (without the busy timeout) while another
    // process opens it too: retried for a moment, at start only.
    whileLocked(() => db.run("PRAGMA journal_mode = WAL"));
    whileLocked(() => migrate(db));
    this.selectHead = db.prepare("SELECT epoch, head FROM rooms WHERE room = $room");
    this.selectAfter = db.prepare(
      `SELECT "offset", id, sender, text, ts, client_msg_id FROM messages
       WHERE room = $room AND epoch = $epoch AND "offset" > $after AND "offset" < $before
       ORDER BY "offset" LIMIT $limit`,
    );
    this.selectBefore = db.prepare(
      `SELECT "offset", id, sender, text, ts, client_msg_id FROM messages
       WHERE room = $room AND epoch = $epoch AND "offset" < $before
       ORDER BY "offset" DESC LIMIT $limit`,
    );
    this.selectSince = db.prepare(
      `SELECT room, "offset", id, sender, text, ts, client_msg_id FROM messages WHERE ts >= $since ORDER BY ts`,
    );
    const days = options.retentionDays ?? 0;
    if (days > 0) {
      const run = () => void this.expire(Date.now() - days * 86_400_000);
      run();
      this.retention = setInterval(run, 3_600_000);
      this.retention.unref?.();
    }
  }

  head(room: string): RoomHead | undefined {
    const row = this.selectHead.get({ room });
    return row ? { epoch: row.epoch, offset: row.head } : undefined;
  }

  write(epoch: string, m: RoomMessage): Promise<void> {
    if (this.closed) return Promise.reject(new Error("the message store is closed"));
    return this.queue(epoch, frames.message(m)).done;
  }

  writeThen(epoch: string, _m: RoomMessage, frame: string, done: (error?: Error) => void) {
    if (this.closed) return done(new Error("the message store is closed"));
    this.queue(epoch, frame).callbacks.push(done);
  }

  private queue(epoch: string, frame: string): Batch {
    const batch = this.batchForWrite();
    if (epoch !== this.lastEpoch) {
      this.lastEpoch = epoch;
      this.lastEpochJson = JSON.stringify(epoch);
    }
    batch.rows = `${batch.rows}${batch.rows.length > 0 ? "," : ""}${this.lastEpochJson},${frame}`;
    batch.count++;
    this.stats.queued++;
    return batch;
  }

  /** Stores a user's read position in the next batch (see SqliteReadPositionStore); resolves once committed. */
  writeRead(userId: string, room: string, position: RoomHead): Promise<void> {
    if (this.closed) return Promise.reject(new Error("the message store is closed"));
    const batch = this.batchForWrite();
    batch.reads.push(userId, room, position.epoch, position.offset);
    return batch.done;
  }

  /**
   * Appends a direct message to `owner`'s inbox in the next batch: the writer gives it the inbox's
   * next offset in the commit (or answers the kept entry of the same sender and clientMsgId).
   * Resolves once committed with [offset, id, ts, duplicate].
   */
  writeDirect(owner: string, m: DirectMessage): Promise<[number, string, number, 0 | 1]> {
    if (this.closed) return Promise.reject(new Error("the message store is closed"));
    const batch = this.batchForWrite();
    const index = batch.directs.length / FIELDS_PER_DIRECT;
    batch.directs.push(owner, m.id, m.from, m.to, m.text, m.ts, m.clientMsgId);
    // An inbox entry counts as a message: in the batch's bound and in the store's metrics.
    batch.count++;
    this.stats.queued++;
    return batch.done.then(() => batch.appended[index]!);
  }

  /** The batch taking writes, a new one when there is none or it is full; schedules its flush. */
  private batchForWrite(): Batch {
    let batch = this.open;
    if (!batch || batch.count === MAX_BATCH) {
      if (batch) this.full.push(batch);
      batch = this.open = new Batch();
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
    return batch;
  }

  settled(): Promise<void> {
    const last = this.open ?? this.full.at(-1) ?? this.sent;
    return last ? last.done.then(ignore, ignore) : Promise.resolve();
  }

  /** The writer thread, started on first use and again after it died. */
  private thread(): RefWorker {
    if (this.writer) return this.writer;
    // Listed as an entrypoint of the compiled binary (scripts/build.ts), which embeds it.
    const writer = new Worker(WRITER_URL) as RefWorker;
    writer.onmessage = (event: MessageEvent<WriterReply>) => this.settle(event.data);
    writer.onerror = (event) => {
      // The thread is gone: the batch it held fails, and the next batch starts another.
      this.writer = undefined;
      this.opening = false;
      this.settle({ ok: false, error: `the database writer stopped: ${event.message}` });
    };
    writer.postMessage({
      type: "open",
      file: this.db.filename,
      busyTimeoutMs: BUSY_TIMEOUT_MS,
      synchronous: this.synchronous,
    } satisfies WriterRequest);
    this.opening = true;
    this.writer = writer;
    return writer;
  }

  /**
   * Sends the oldest waiting batch to the writer thread. One batch at a time: writes arriving
   * meanwhile wait for its commit and then go together (group commit), so under load one
   * transaction and one fsync carry many messages.
   */
  private flush() {
    if (this.sent || (this.opening && this.writer)) return;
    const batch = this.full.shift() ?? this.open;
    if (!batch) return;
    if (batch === this.open) this.open = undefined;
    const writer = this.thread();
    if (this.opening) {
      this.full.unshift(batch);
      return;
    }
    batch.started = performance.now();
    this.sent = batch;
    // One string: structured cloning thousands of small values costs the event loop far more.
    writer.postMessage({
      type: "write",
      rows: `[${batch.rows}]`,
      reads: JSON.stringify(batch.reads),
      directs: JSON.stringify(batch.directs),
      inboxSize: this.inboxSize,
      expireBefore: batch.expireBefore,
      expireLimit: RETENTION_CHUNK,
    } satisfies WriterRequest);
    // While a batch is in flight the writer keeps the process alive; idle, it does not. (A worker
    // that is not ref'd is waited for by polling, which costs the event loop a core.)
    writer.ref();
  }

  /** The writer's reply: to `open`, or to the batch in flight. */
  private settle(reply: WriterReply) {
    const batch = this.sent;
    if (this.opening) {
      this.opening = false;
      if (!reply.ok) {
        this.stats.errors++;
        this.onError?.(new Error(reply.error));
      }
    } else if (batch) {
      this.sent = undefined;
      this.stats.queued -= batch.count;
      if (reply.ok) {
        batch.deleted = reply.deleted ?? 0;
        batch.appended = reply.directs ?? [];
        this.stats.expired += batch.deleted;
        this.stats.batches++;
        this.stats.messages += batch.count;
        if (batch.count > 0) this.onCommit?.(batch.count, (performance.now() - batch.started) / 1000);
        batch.resolve();
        for (const done of batch.callbacks) done();
      } else {
        const error = new Error(reply.error);
        this.stats.errors++;
        this.onError?.(error);
        batch.reject(error);
        for (const done of batch.callbacks) done(error);
      }
    }
    this.flush();
    if (this.sent || this.opening) return;
    this.writer?.unref();
    this.drained?.();
  }

  /** Every message stored at or after `since` (ms since the epoch), oldest first. */
  storedSince(since: number): RoomMessage[] {
    return this.selectSince.all({ since }).map((r) => decode(r.room, r));
  }

  after(room: string, epoch: string, after: number, before: number, limit: number): StoredPage {
    const rows = this.selectAfter.all({ room, epoch, after, before, limit: limit + 1 });
    return { messages: rows.slice(0, limit).map((r) => decode(room, r)), hasMore: rows.length > limit };
  }

  before(room: string, epoch: string, before: number, limit: number): StoredPage {
    const rows = this.selectBefore.all({ room, epoch, before, limit: limit + 1 });
    const messages = rows.slice(0, limit).map((r) => decode(room, r));
    return { messages: messages.reverse(), hasMore: rows.length > limit };
  }

  /**
   * Deletes messages older than `cutoff` (ms since the epoch), RETENTION_CHUNK at a time, each step
   * in the writer thread with the batch it rides on; rooms keep their head.
   */
  async expire(cutoff: number): Promise<number> {
    let total = 0;
    for (;;) {
      if (this.closed) return total;
      const batch = this.batchForWrite();
      batch.expireBefore = cutoff;
      try {
        await batch.done;
      } catch {
        return total; // counted and reported with the batch
      }
      total += batch.deleted;
      if (batch.deleted < RETENTION_CHUNK) return total;
    }
  }

  /** Commits what is queued, waits for the writer's last reply, then stops it and closes the file. */
  async close() {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    clearInterval(this.retention);
    if (this.sent || this.opening) await new Promise<void>((resolve) => (this.drained = resolve));
    const writer = this.writer;
    this.writer = undefined;
    if (writer) {
      // The writer closes its connection first: a thread that is only terminated may still hold
      // the file, and the next process to open it would find it locked.
      await new Promise<void>((resolve) => {
        writer.onmessage = () => resolve();
        writer.onerror = () => resolve();
        writer.ref();
        writer.postMessage({ type: "close" } satisfies WriterRequest);
      });
      writer.terminate();
    }
    this.db.close();
  }
}

function ignore() {}

/** Runs `step`, again every 20 ms for up to BUSY_TIMEOUT_MS while SQLite answers that the file is locked. */
function whileLocked<T>(step: () => T): T {
  const deadline = Date.now() + BUSY_TIMEOUT_MS;
  for (;;) {
    try {
      return step();
    } catch (error) {
      if (!/database is locked|SQLITE_BUSY/i.test((error as Error).message) || Date.now() > deadline) throw error;
      Bun.sleepSync(20);
    }
  }
}

function decode(room: string, r: Row): RoomMessage {
  return { room, id: r.id, offset: r.offset, from: r.sender, text: r.text, ts: r.ts, clientMsgId: r.client_msg_id };
}
