import { SQL } from "bun";
import type { RoomMessage } from "../protocol/server-frames";
import type { StoredPage } from "./store";
import { type StoredEntries, storedBatchJson } from "./stored-entries";

/**
 * The schema, one step per version, in order. A step is never edited once released: a change is a
 * new step. The same ideas as the SQLite schema: a message is unique by (room, epoch, offset), so a
 * new epoch never overwrites or collides with the rows of an older one.
 */
export const POSTGRES_MIGRATIONS: readonly { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE messages (
        room TEXT NOT NULL,
        epoch TEXT NOT NULL,
        "offset" BIGINT NOT NULL,
        id TEXT NOT NULL,
        sender TEXT NOT NULL,
        text TEXT NOT NULL,
        ts BIGINT NOT NULL,
        client_msg_id TEXT NOT NULL,
        PRIMARY KEY (room, epoch, "offset")
      );
      CREATE INDEX messages_ts ON messages (ts);
    `,
  },
  {
    version: 2,
    // Direct messages, written behind from the Redis inboxes like room messages from the room logs,
    // and read positions. An inbox's head stays after the retention deleted its entries, so a
    // Redis inbox restored from it continues its epoch and offsets (see postgres-inbox.ts).
    sql: `
      CREATE TABLE inbox_messages (
        user_id TEXT NOT NULL,
        epoch TEXT NOT NULL,
        "offset" BIGINT NOT NULL,
        id TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        text TEXT NOT NULL,
        ts BIGINT NOT NULL,
        client_msg_id TEXT NOT NULL,
        PRIMARY KEY (user_id, epoch, "offset")
      );
      CREATE INDEX inbox_messages_ts ON inbox_messages (ts);
      CREATE TABLE inbox_heads (
        user_id TEXT PRIMARY KEY,
        epoch TEXT NOT NULL,
        head BIGINT NOT NULL
      );
      CREATE TABLE read_positions (
        user_id TEXT NOT NULL,
        room TEXT NOT NULL,
        epoch TEXT NOT NULL,
        "offset" BIGINT NOT NULL,
        PRIMARY KEY (user_id, room)
      );
    `,
  },
];

/** Key of the advisory lock held while migrating: instances starting together migrate one at a time. */
const MIGRATION_LOCK = 7_201_605_311;
/** Rows deleted per retention statement. */
const RETENTION_CHUNK = 5000;

export class PostgresSchemaError extends Error {}

export interface PostgresOptions {
  url: string;
  /** Connections in the pool. */
  poolSize: number;
  /** PostgreSQL cancels a statement running longer than this. */
  statementTimeoutMs: number;
  /** Days messages are kept; 0 keeps them forever. */
  retentionDays?: number;
}

/** A message with the epoch it was stored in, as the write-behind hands it over. */
export interface EpochMessage {
  epoch: string;
  message: RoomMessage;
}

type Row = { offset: string; id: string; sender: string; text: string; ts: string; client_msg_id: string };

/**
 * Room messages in PostgreSQL, through Bun's built-in client (a pool of `poolSize` connections; a
 * connection lost with a server restart is replaced on the next query). It is written by the
 * write-behind (see RedisPersister), never on the acknowledgement path; its reads serve history and
 * join replays beyond the Redis window. Guarantees: a message is stored once per (room, epoch,
 * offset) however often it is inserted; a batch is inserted in one statement, so it is stored whole
 * or not at all.
 */
export class PostgresMessageStore {
  readonly sql: SQL;
  private retention: ReturnType<typeof setInterval> | undefined;
  /** Messages the retention deleted. */
  expired = 0;

  private constructor(
    sql: SQL,
    private readonly options: PostgresOptions,
  ) {
    this.sql = sql;
  }

  /** Connects and migrates; throws when the database cannot be reached or its schema is newer. */
  static async open(options: PostgresOptions): Promise<PostgresMessageStore> {
    const sql = new SQL({
      url: options.url,
      max: options.poolSize,
      connectionTimeout: 10,
      idleTimeout: 60,
      maxLifetime: 3600,
      // Unnamed statements: Bun's SQL client (seen on 1.3.14) can answer a query with another's
      // rows and then wedge the connection for good when a burst of differently shaped
      // parameterized queries meets named prepared statements on one connection
      // (oven-sh/bun#33627, #33985), as the inbox head reads beside the write-behind inserts do.
      // Our statements are few and cheap to plan.
      prepare: false,
      connection: { statement_timeout: options.statementTimeoutMs },
    });
    try {
      await migrate(sql);
    } catch (error) {
      await sql.close({ timeout: 0 }).catch(() => {});
      throw error;
    }
    const store = new PostgresMessageStore(sql, options);
    const days = options.retentionDays ?? 0;
    if (days > 0) {
      const run = () => void store.expire(Date.now() - days * 86_400_000).catch(() => {});
      run();
      store.retention = setInterval(run, 3_600_000);
      store.retention.unref?.();
    }
    return store;
  }

  /**
   * Inserts messages in one statement; a message already stored is skipped. Resolves once committed.
   * Encodes them as Redis stores them and inserts them as the write-behind does (see insertStored).
   */
  async insert(batch: readonly EpochMessage[]): Promise<void> {
    const groups: StoredEntries[] = [];
    for (const { epoch, message: m } of batch) {
      const last = groups.at(-1);
      const entry = JSON.stringify({
        offset: m.offset,
        id: m.id,
        from: m.from,
        text: m.text,
        ts: m.ts,
        clientMsgId: m.clientMsgId,
      });
      if (last && last.owner === m.room && last.epoch === epoch) last.entries.push(entry);
      else groups.push({ owner: m.room, epoch, entries: [entry] });
    }
    await this.insertStored(groups);
  }

  /**
   * Inserts room log entries as Redis stores them, in one statement; a message already stored is
   * skipped. Resolves once committed. The rows travel as one JSON parameter, the entries' own JSON
   * joined without parsing (see stored-entries.ts), and PostgreSQL reads each entry's fields in one
   * go (json_to_recordset). The statement's text is the same for every batch, so it is planned
   * cheaply, where a VALUES list of 8 parameters a row was a new statement each time.
   */
  async insertStored(batch: readonly StoredEntries[]): Promise<void> {
    if (!batch.some((group) => group.entries.length > 0)) return;
    const rows = storedBatchJson(batch);
    // Sent as text (then cast): a parameter PostgreSQL describes as json, Bun would encode as a JSON
    // string. Bounded here too: a query queued for a connection to a dead server may wait on its own
    // reconnection attempts. A late commit after the timeout is harmless (ON CONFLICT DO NOTHING).
    await bounded(
      this.sql`WITH g AS MATERIALIZED (
          SELECT x->>'o' AS o, x->>'e' AS e, x->'m' AS m FROM json_array_elements(${rows}::text::json) AS x)
        INSERT INTO messages (room, epoch, "offset", id, sender, text, ts, client_msg_id)
        SELECT g.o, g.e, m."offset", m.id, m."from", m.text, m.ts, m."clientMsgId"
        FROM g, json_to_recordset(g.m) AS m("offset" bigint, id text, "from" text, text text, ts bigint, "clientMsgId" text)
        ON CONFLICT DO NOTHING`,
      this.options.statementTimeoutMs + 2000,
    );
  }

  /** Resolves when the database answers a trivial query, rejects otherwise. */
  async probe(): Promise<void> {
    await bounded(this.sql`SELECT 1`, this.options.statementTimeoutMs + 2000);
  }

  /** Messages of the epoch with `after < offset < before`, oldest first, at most `limit`. */
  async after(room: string, epoch: string, after: number, before: number, limit: number): Promise<StoredPage> {
    if (limit <= 0) return { messages: [], hasMore: false };
    const rows: Row[] = await this.sql`
      SELECT "offset", id, sender, text, ts, client_msg_id FROM messages
      WHERE room = ${room} AND epoch = ${epoch} AND "offset" > ${after} AND "offset" < ${before}
      ORDER BY "offset" LIMIT ${limit + 1}`;
    return { messages: rows.slice(0, limit).map((r) => decode(room, r)), hasMore: rows.length > limit };
  }

  /** The newest `limit` messages of the epoch with an offset below `before`, oldest first. */
  async before(room: string, epoch: string, before: number, limit: number): Promise<StoredPage> {
    const rows: Row[] = await this.sql`
      SELECT "offset", id, sender, text, ts, client_msg_id FROM messages
      WHERE room = ${room} AND epoch = ${epoch} AND "offset" < ${before}
      ORDER BY "offset" DESC LIMIT ${limit + 1}`;
    const messages = rows.slice(0, limit).map((r) => decode(room, r));
    return { messages: messages.reverse(), hasMore: rows.length > limit };
  }

  /** Deletes messages older than `cutoff` (ms since the epoch), RETENTION_CHUNK per statement. */
  async expire(cutoff: number): Promise<number> {
    let total = 0;
    for (;;) {
      const result = await this.sql`
        DELETE FROM messages WHERE ctid IN (SELECT ctid FROM messages WHERE ts < ${cutoff} LIMIT ${RETENTION_CHUNK})`;
      const deleted = result.count ?? 0;
      total += deleted;
      this.expired += deleted;
      if (deleted < RETENTION_CHUNK) break;
    }
    // Direct messages are kept as long as room messages (their inbox heads stay).
    for (;;) {
      const result = await this.sql`
        DELETE FROM inbox_messages WHERE ctid IN
          (SELECT ctid FROM inbox_messages WHERE ts < ${cutoff} LIMIT ${RETENTION_CHUNK})`;
      const deleted = result.count ?? 0;
      total += deleted;
      this.expired += deleted;
      if (deleted < RETENTION_CHUNK) return total;
    }
  }

  async close() {
    clearInterval(this.retention);
    await this.sql.close({ timeout: 2 });
  }

  get retentionDays() {
    return this.options.retentionDays ?? 0;
  }

  get statementTimeoutMs() {
    return this.options.statementTimeoutMs;
  }
}

/**
 * Brings the schema to the newest version in one transaction holding an advisory lock: instances
 * starting at once wait for the first, then find its steps applied. A database written by a newer
 * release is refused rather than used with a schema this release does not know.
 */
export async function migrate(sql: SQL, migrations = POSTGRES_MIGRATIONS): Promise<{ from: number; to: number }> {
  const known = migrations.at(-1)?.version ?? 0;
  return sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`;
    await tx`CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`;
    const [row] = await tx`SELECT coalesce(max(version), 0)::int AS v FROM schema_migrations`;
    const from = (row as { v: number }).v;
    if (from > known) {
      throw new PostgresSchemaError(`database schema version ${from} is newer than this release knows (${known})`);
    }
    for (const step of migrations) {
      if (step.version <= from) continue;
      await tx.unsafe(step.sql);
      await tx`INSERT INTO schema_migrations (version, applied_at) VALUES (${step.version}, ${Date.now()})`;
    }
    return { from, to: known };
  });
}

function decode(room: string, r: Row): RoomMessage {
  return {
    room,
    id: r.id,
    offset: Number(r.offset),
    from: r.sender,
    text: r.text,
    ts: Number(r.ts),
    clientMsgId: r.client_msg_id,
  };
}

/** `query`, or a rejection once `ms` passed without an answer. */
export async function bounded<T>(query: PromiseLike<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the database did not answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([query, late]);
  } finally {
    clearTimeout(timer);
  }
}
