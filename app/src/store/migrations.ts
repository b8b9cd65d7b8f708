import type { Database } from "bun:sqlite";

/**
 * The schema, one step per version, in order. A step is never edited once released: a change is a
 * new step. Versions applied are recorded in `schema_migrations`.
 */
export const SQLITE_MIGRATIONS: readonly { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE rooms (
        room TEXT PRIMARY KEY,
        epoch TEXT NOT NULL,
        head INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE messages (
        room TEXT NOT NULL,
        epoch TEXT NOT NULL,
        "offset" INTEGER NOT NULL,
        id TEXT NOT NULL,
        sender TEXT NOT NULL,
        text TEXT NOT NULL,
        ts INTEGER NOT NULL,
        client_msg_id TEXT NOT NULL,
        PRIMARY KEY (room, epoch, "offset")
      ) WITHOUT ROWID;
      CREATE INDEX messages_ts ON messages (ts);
    `,
  },
  {
    version: 2,
    sql: `
      CREATE TABLE read_positions (
        user_id TEXT NOT NULL,
        room TEXT NOT NULL,
        epoch TEXT NOT NULL,
        "offset" INTEGER NOT NULL,
        PRIMARY KEY (user_id, room)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 3,
    // Direct-message inboxes. Offsets never restart in a database, so one epoch, drawn when the
    // schema is created, serves every inbox of the file: a replaced or restored-from-scratch file
    // shows clients a new epoch. An inbox's head stays after its entries are deleted.
    sql: `
      CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
      INSERT INTO settings (key, value) VALUES ('inbox_epoch', lower(hex(randomblob(16))));
      CREATE TABLE inboxes (
        user_id TEXT PRIMARY KEY,
        head INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE inbox (
        user_id TEXT NOT NULL,
        "offset" INTEGER NOT NULL,
        id TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        text TEXT NOT NULL,
        ts INTEGER NOT NULL,
        client_msg_id TEXT NOT NULL,
        PRIMARY KEY (user_id, "offset")
      ) WITHOUT ROWID;
      CREATE UNIQUE INDEX inbox_client_msg_id ON inbox (user_id, sender, recipient, client_msg_id);
      CREATE INDEX inbox_ts ON inbox (ts);
    `,
  },
];

export class SchemaError extends Error {}

/**
 * Brings the database to the newest version. The check and the steps run in one IMMEDIATE
 * transaction, which holds the database's write lock: a second process starting on the same file
 * waits (up to the busy timeout), then finds the steps applied. A database written by a newer
 * release is refused rather than used with a schema this release does not know.
 */
export function migrate(db: Database, migrations = SQLITE_MIGRATIONS): { from: number; to: number } {
  db.run("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
  const known = migrations.at(-1)?.version ?? 0;
  return db
    .transaction(() => {
      const row = db.query("SELECT max(version) AS v FROM schema_migrations").get() as { v: number | null };
      const from = row.v ?? 0;
      if (from > known) {
        throw new SchemaError(`database schema version ${from} is newer than this release knows (${known})`);
      }
      for (const step of migrations) {
        if (step.version <= from) continue;
        db.run(step.sql);
        db.run("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", [step.version, Date.now()]);
      }
      return { from, to: known };
    })
    .immediate();
}
