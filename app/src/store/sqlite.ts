import { Database, type Statement } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { RoomHead } from "../history/history";
import type { RoomMessage } from "../protocol/server-frames";
import { migrate } from "./migrations";
import type { MessageStore, StoredPage } from "./store";

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

interface Pending {
  epoch: string;
  message: RoomMessage;
  resolve: () => void;
  reject: (error: unknown) => void;
}

type Row = { offset: number; id: string; sender: string; text: string; ts: number; client_msg_id: string };

/**
 * Messages in an embedded SQLite file (WAL, synchronous FULL). Writes made in one turn of the event
 * loop share one transaction: under load, one fsync carries many messages, and each write resolves
 * once its transaction is on disk. One process owns the file; it is not shared between instances.
 */
export class SqliteMessageStore implements MessageStore {
  readonly db: Database;
  readonly stats: SqliteStoreStats = { batches: 0, messages: 0, errors: 0, expired: 0, queued: 0 };
  /** Called after each commit with its size and duration, and with the error of a failed one. */
  onCommit?: (messages: number, seconds: number) => void;
  onError?: (error: Error) => void;
  private queue: Pending[] = [];
  private readonly insertMessage: Statement;
  private readonly upsertRoom: Statement;
  private readonly selectHead: Statement<{ epoch: string; head: number }>;
  private readonly selectAfter: Statement<Row>;
  private readonly selectBefore: Statement<Row>;
  private readonly deleteOld: Statement;
  private retention: ReturnType<typeof setInterval> | undefined;
  private closed = false;

  /** Opens (creating when missing) `<dataDir>/messages.sqlite` and migrates it; throws when it cannot. */
  static open(dataDir: string, options: { retentionDays?: number } = {}) {
    mkdirSync(dataDir, { recursive: true });
    return new SqliteMessageStore(new Database(join(dataDir, SQLITE_FILE), { create: true, strict: true }), options);
  }

  constructor(db: Database, options: { retentionDays?: number } = {}) {
    this.db = db;
    db.run(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    db.run("PRAGMA journal_mode = WAL");
    // FULL: a commit is on disk before the write resolves, so an acknowledged message survives a power cut.
    db.run("PRAGMA synchronous = FULL");
    migrate(db);
    this.insertMessage = db.prepare(
      `INSERT INTO messages (room, epoch, "offset", id, sender, text, ts, client_msg_id)
       VALUES ($room, $epoch, $offset, $id, $sender, $text, $ts, $clientMsgId) ON CONFLICT DO NOTHING`,
    );
    // The head only moves forward within an epoch; a write of another epoch replaces it.
    this.upsertRoom = db.prepare(
      `INSERT INTO rooms (room, epoch, head) VALUES ($room, $epoch, $head)
       ON CONFLICT (room) DO UPDATE SET epoch = excluded.epoch, head = excluded.head
       WHERE rooms.epoch <> excluded.epoch OR rooms.head < excluded.head`,
    );
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
    this.deleteOld = db.prepare(
      `DELETE FROM messages WHERE (room, epoch, "offset") IN
       (SELECT room, epoch, "offset" FROM messages WHERE ts < $cutoff LIMIT ${RETENTION_CHUNK})`,
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

  write(epoch: string, message: RoomMessage): Promise<void> {
    if (this.closed) return Promise.reject(new Error("the message store is closed"));
    return new Promise((resolve, reject) => {
      if (this.queue.length === 0) setImmediate(() => this.flush());
      this.queue.push({ epoch, message, resolve, reject });
      this.stats.queued = this.queue.length;
    });
  }

  /** Commits everything queued, in arrival order, in transactions of at most MAX_BATCH messages. */
  private flush() {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, MAX_BATCH);
      this.stats.queued = this.queue.length;
      const started = performance.now();
      try {
        this.commit(batch);
      } catch (error) {
        this.stats.errors++;
        this.onError?.(error as Error);
        for (const pending of batch) pending.reject(error);
        continue;
      }
      this.stats.batches++;
      this.stats.messages += batch.length;
      this.onCommit?.(batch.length, (performance.now() - started) / 1000);
      for (const pending of batch) pending.resolve();
    }
  }

  private commit(batch: Pending[]) {
    const heads = new Map<string, { epoch: string; head: number }>();
    this.db
      .transaction(() => {
        for (const { epoch, message: m } of batch) {
          this.insertMessage.run({
            room: m.room,
            epoch,
            offset: m.offset,
            id: m.id,
            sender: m.from,
            text: m.text,
            ts: m.ts,
            clientMsgId: m.clientMsgId,
          });
          const known = heads.get(m.room);
          if (!known || known.epoch !== epoch || known.head < m.offset) heads.set(m.room, { epoch, head: m.offset });
        }
        for (const [room, { epoch, head }] of heads) this.upsertRoom.run({ room, epoch, head });
      })
      .immediate();
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

  /** Deletes messages older than `cutoff` (ms since the epoch) in small steps; rooms keep their head. */
  async expire(cutoff: number): Promise<number> {
    let total = 0;
    for (;;) {
      if (this.closed) return total;
      let changes: number;
      try {
        changes = this.deleteOld.run({ cutoff }).changes;
      } catch (error) {
        this.stats.errors++;
        this.onError?.(error as Error);
        return total;
      }
      total += changes;
      this.stats.expired += changes;
      if (changes < RETENTION_CHUNK) return total;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  async close() {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    clearInterval(this.retention);
    this.db.close();
  }
}

function decode(room: string, r: Row): RoomMessage {
  return { room, id: r.id, offset: r.offset, from: r.sender, text: r.text, ts: r.ts, clientMsgId: r.client_msg_id };
}
