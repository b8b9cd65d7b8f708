import type { SQL } from "bun";
import type { InboxEntry } from "../inbox/inbox";
import type { ReadPosition } from "../reads/reads";
import { bounded } from "./postgres";
import { offsetOf, type StoredEntries, storedBatchJson, wellFormed } from "./stored-entries";

/** The newest epoch and offset the database holds of one inbox. */
export interface InboxHead {
  epoch: string;
  offset: number;
}

/** A read position to store, as the read-position writer hands it over. */
export interface ReadRow {
  userId: string;
  room: string;
  position: ReadPosition;
}

/**
 * Longest wait for a read on a client's path (a first direct message to an inbox, a resume, a join's
 * read position), and how long reads are not even tried after one failed: a database that is down
 * or hung then costs those requests at most this once per pause, not a wait each.
 */
const READ_TIMEOUT_MS = 1000;
const PAUSE_AFTER_FAILURE_MS = 5000;

type EntryRow = {
  offset: string;
  id: string;
  sender: string;
  recipient: string;
  text: string;
  ts: string;
  client_msg_id: string;
};

/**
 * Direct messages and read positions in PostgreSQL (tables of migration 2), on the message store's
 * pool. Inbox entries are written behind from the Redis inboxes (see inbox-write-behind.ts), never
 * on the acknowledgement path. Guarantees: an entry is stored once per (user, epoch, offset) however
 * often it is inserted; an inbox's head is never below an offset its rows hold (see `head`); a
 * head only moves forward within its epoch and is replaced by a newer epoch's; a read position only
 * moves forward within its epoch.
 */
export class PostgresInboxArchive {
  private readFailedAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly sql: SQL,
    /** Longest wait for one statement, a hung database included. */
    private readonly timeoutMs: number,
  ) {}

  /**
   * Inserts inbox entries as Redis stores them (the write-behind hands them over with the inbox's
   * owner, see inbox-write-behind.ts), then moves their inboxes' heads. The rows travel as one
   * JSON parameter, the entries' own JSON joined without parsing (see stored-entries.ts).
   */
  async insertStored(batch: readonly StoredEntries[]): Promise<void> {
    const heads = new Map<string, [string, string, number]>();
    for (const { owner, epoch, entries } of batch) {
      const last = entries.at(-1);
      if (last === undefined) continue;
      const offset = offsetOf(last);
      const head = heads.get(owner);
      // One take per inbox per pass: a group holds one epoch of an inbox, in offset order.
      if (!head || head[1] !== epoch || head[2] < offset)
        heads.set(owner, [wellFormed(owner), wellFormed(epoch), offset]);
    }
    if (heads.size === 0) return;
    const rows = storedBatchJson(batch);
    // Two statements, not a transaction: Bun 1.3's pool can stall for good when `sql.begin()` runs
    // beside pooled parameterized queries (oven-sh/bun#32004), as the inbox head reads do. Safe
    // without one: a batch whose heads failed is retried whole (`persisted` moves only after both),
    // and `head()` also reads the rows, so a head lagging them for a moment never hands out an
    // offset the database holds. Parameters sent as text, then cast (see PostgresMessageStore.insert).
    const ms = this.timeoutMs + 2000;
    await bounded(
      this.sql`WITH g AS MATERIALIZED (
          SELECT x->>'o' AS o, x->>'e' AS e, x->'m' AS m FROM json_array_elements(${rows}::text::json) AS x)
        INSERT INTO inbox_messages (user_id, epoch, "offset", id, sender, recipient, text, ts, client_msg_id)
        SELECT g.o, g.e, m."offset", m.id, m."from", m."to", m.text, m.ts, m."clientMsgId"
        FROM g, json_to_recordset(g.m) AS m("offset" bigint, id text, "from" text, "to" text, text text, ts bigint, "clientMsgId" text)
        ON CONFLICT DO NOTHING`,
      ms,
    );
    await bounded(
      this.sql`
        INSERT INTO inbox_heads (user_id, epoch, head)
          SELECT h->>0, h->>1, (h->>2)::bigint FROM json_array_elements(${JSON.stringify([...heads.values()])}::text::json) AS h
        ON CONFLICT (user_id) DO UPDATE SET
          head = CASE WHEN inbox_heads.epoch = EXCLUDED.epoch
            THEN GREATEST(inbox_heads.head, EXCLUDED.head) ELSE EXCLUDED.head END,
          epoch = EXCLUDED.epoch`,
      ms,
    );
  }

  /** A read for a client's request: bounded by READ_TIMEOUT_MS, refused at once for a while after a failure. */
  private async read<T>(query: PromiseLike<T>): Promise<T> {
    if (Date.now() - this.readFailedAt < PAUSE_AFTER_FAILURE_MS)
      throw new Error("the message database failed a read moments ago");
    try {
      return await bounded(query, Math.min(this.timeoutMs, READ_TIMEOUT_MS));
    } catch (error) {
      this.readFailedAt = Date.now();
      throw error;
    }
  }

  /** Resolves when the database answers a trivial query, rejects otherwise. */
  async probe(): Promise<void> {
    await bounded(this.sql`SELECT 1`, this.timeoutMs + 2000);
  }

  /** The inbox's newest epoch and offset, or undefined for an inbox never written behind. */
  async head(owner: string): Promise<InboxHead | undefined> {
    const [row] = (await this.read(
      this.sql`
        SELECT h.epoch, GREATEST(h.head, (SELECT coalesce(max(m."offset"), 0) FROM inbox_messages m
          WHERE m.user_id = h.user_id AND m.epoch = h.epoch)) AS head
        FROM inbox_heads h WHERE h.user_id = ${owner}`,
    )) as { epoch: string; head: string }[];
    return row && { epoch: row.epoch, offset: Number(row.head) };
  }

  /** Entries of the epoch with `after < offset < before`, oldest first, at most `limit`. */
  async after(owner: string, epoch: string, after: number, before: number, limit: number): Promise<InboxEntry[]> {
    if (limit <= 0) return [];
    const rows: EntryRow[] = await this.read(
      this.sql`
        SELECT "offset", id, sender, recipient, text, ts, client_msg_id FROM inbox_messages
        WHERE user_id = ${owner} AND epoch = ${epoch} AND "offset" > ${after} AND "offset" < ${before}
        ORDER BY "offset" LIMIT ${limit}`,
    );
    return rows.map((r) => ({
      offset: Number(r.offset),
      id: r.id,
      from: r.sender,
      to: r.recipient,
      text: r.text,
      ts: Number(r.ts),
      clientMsgId: r.client_msg_id,
    }));
  }

  /** Stores read positions in one statement, each only forward within its epoch. */
  async upsertReads(batch: readonly ReadRow[]): Promise<void> {
    if (batch.length === 0) return;
    const rows = batch.map(({ userId, room, position }) => ({
      user_id: userId,
      room,
      epoch: position.epoch,
      offset: position.offset,
    }));
    await bounded(
      this.sql`
        INSERT INTO read_positions ${this.sql(rows)} ON CONFLICT (user_id, room) DO UPDATE SET
          "offset" = CASE WHEN read_positions.epoch = EXCLUDED.epoch
            THEN GREATEST(read_positions."offset", EXCLUDED."offset") ELSE EXCLUDED."offset" END,
          epoch = EXCLUDED.epoch`,
      this.timeoutMs + 2000,
    );
  }

  async readPosition(userId: string, room: string): Promise<ReadPosition | undefined> {
    const [row] = (await this.read(
      this.sql`SELECT epoch, "offset" FROM read_positions WHERE user_id = ${userId} AND room = ${room}`,
    )) as { epoch: string; offset: string }[];
    return row && { epoch: row.epoch, offset: Number(row.offset) };
  }
}
