// The SQLite message database's writer, in a worker thread: inserts and commits (an fsync each)
// take no time from the event loop that serves the sockets. The main thread keeps its own
// connection for reads; WAL lets them run beside this writer and see each commit once it is done.
declare const self: Worker;

import { Database, type Statement } from "bun:sqlite";
import { FIELDS_PER_MESSAGE, FIELDS_PER_READ, type WriterReply, type WriterRequest } from "./writer-protocol";

let db: Database | undefined;
let insertMessage: Statement;
let upsertRoom: Statement;
let upsertRead: Statement;
let deleteOld: Statement;

function open(file: string, busyTimeoutMs: number) {
  db = new Database(file);
  db.run(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
  db.run("PRAGMA journal_mode = WAL");
  // FULL: a commit is on disk before the write is acknowledged, so it survives a power cut.
  db.run("PRAGMA synchronous = FULL");
  insertMessage = db.prepare(
    `INSERT INTO messages (room, epoch, "offset", id, sender, text, ts, client_msg_id)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING`,
  );
  // The head only moves forward within an epoch; a write of another epoch replaces it.
  upsertRoom = db.prepare(
    `INSERT INTO rooms (room, epoch, head) VALUES (?1, ?2, ?3)
     ON CONFLICT (room) DO UPDATE SET epoch = excluded.epoch, head = excluded.head
     WHERE rooms.epoch <> excluded.epoch OR rooms.head < excluded.head`,
  );
  // A read position only moves forward within an epoch; a read of another epoch replaces it.
  upsertRead = db.prepare(
    `INSERT INTO read_positions (user_id, room, epoch, "offset") VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (user_id, room) DO UPDATE SET epoch = excluded.epoch, "offset" = excluded."offset"
     WHERE read_positions.epoch <> excluded.epoch OR read_positions."offset" < excluded."offset"`,
  );
  deleteOld = db.prepare(
    `DELETE FROM messages WHERE (room, epoch, "offset") IN
     (SELECT room, epoch, "offset" FROM messages WHERE ts < ?1 LIMIT ?2)`,
  );
}

/** Commits one batch; returns the messages its retention step deleted. */
function write(rows: unknown[], reads: unknown[], expireBefore?: number, expireLimit = 0): number {
  const heads = new Map<string, [epoch: unknown, head: number]>();
  return db!
    .transaction(() => {
      for (let i = 0; i < rows.length; i += FIELDS_PER_MESSAGE) {
        insertMessage.run(...(rows.slice(i, i + FIELDS_PER_MESSAGE) as string[]));
        const room = rows[i] as string;
        const offset = rows[i + 2] as number;
        const known = heads.get(room);
        if (!known || known[0] !== rows[i + 1] || known[1] < offset) heads.set(room, [rows[i + 1], offset]);
      }
      for (const [room, [epoch, head]] of heads) upsertRoom.run(room, epoch as string, head);
      for (let i = 0; i < reads.length; i += FIELDS_PER_READ) {
        upsertRead.run(...(reads.slice(i, i + FIELDS_PER_READ) as string[]));
      }
      return expireBefore === undefined ? 0 : deleteOld.run(expireBefore, expireLimit).changes;
    })
    .immediate();
}

self.onmessage = (event: MessageEvent<WriterRequest>) => {
  const request = event.data;
  let reply: WriterReply;
  try {
    if (request.type === "open") {
      open(request.file, request.busyTimeoutMs);
      reply = { ok: true };
    } else {
      const rows = JSON.parse(request.rows) as unknown[];
      const reads = JSON.parse(request.reads) as unknown[];
      reply = { ok: true, deleted: write(rows, reads, request.expireBefore, request.expireLimit) };
    }
  } catch (error) {
    reply = { ok: false, error: (error as Error).message };
  }
  self.postMessage(reply);
};
