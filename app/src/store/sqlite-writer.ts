// The SQLite message database's writer, in a worker thread: inserts and commits (an fsync each)
// take no time from the event loop that serves the sockets. The main thread keeps its own
// connection for reads; WAL lets them run beside this writer and see each commit once it is done.
declare const self: Worker;

import { Database, type Statement } from "bun:sqlite";
import type { RoomMessage } from "../protocol/server-frames";
import {
  FIELDS_PER_DIRECT,
  FIELDS_PER_MESSAGE,
  FIELDS_PER_READ,
  type WriterReply,
  type WriterRequest,
} from "./writer-protocol";

let db: Database | undefined;
let insertMessage: Statement;
let upsertRoom: Statement;
let upsertRead: Statement;
let deleteOld: Statement;
let deleteOldDirects: Statement;
let selectDirect: Statement<{ offset: number; id: string; ts: number }>;
let selectInboxHead: Statement<{ head: number }>;
let upsertInbox: Statement;
let insertDirect: Statement;
let trimInbox: Statement;
/** Every statement open() prepared, finalized before the connection closes. */
const prepared: Statement[] = [];

function prepare<Row = unknown>(sql: string): Statement<Row> {
  const statement = db!.prepare(sql) as Statement<Row>;
  prepared.push(statement);
  return statement;
}

/**
 * Finalizes the statements and closes the connection, so that the file is free the moment the main
 * thread hears back: terminating the thread does not close what it holds at once, and whoever
 * opens the file next (a restart, a migration) would find it locked.
 */
function close() {
  for (const statement of prepared.splice(0)) statement.finalize();
  db?.close(true);
  db = undefined;
}

function open(file: string, busyTimeoutMs: number, synchronous: "full" | "normal") {
  db = new Database(file);
  db.run(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
  db.run("PRAGMA journal_mode = WAL");
  // FULL: a commit is on disk before the write is acknowledged, so it survives a power cut. NORMAL
  // (in WAL mode): the commit is written to the log but synced only at checkpoints, so it survives
  // the process being killed, not the machine losing power.
  db.run(`PRAGMA synchronous = ${synchronous === "normal" ? "NORMAL" : "FULL"}`);
  insertMessage = prepare(
    `INSERT INTO messages (room, epoch, "offset", id, sender, text, ts, client_msg_id)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING`,
  );
  // The head only moves forward within an epoch; a write of another epoch replaces it.
  upsertRoom = prepare(
    `INSERT INTO rooms (room, epoch, head) VALUES (?1, ?2, ?3)
     ON CONFLICT (room) DO UPDATE SET epoch = excluded.epoch, head = excluded.head
     WHERE rooms.epoch <> excluded.epoch OR rooms.head < excluded.head`,
  );
  // A read position only moves forward within an epoch; a read of another epoch replaces it.
  upsertRead = prepare(
    `INSERT INTO read_positions (user_id, room, epoch, "offset") VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (user_id, room) DO UPDATE SET epoch = excluded.epoch, "offset" = excluded."offset"
     WHERE read_positions.epoch <> excluded.epoch OR read_positions."offset" < excluded."offset"`,
  );
  deleteOld = prepare(
    `DELETE FROM messages WHERE (room, epoch, "offset") IN
     (SELECT room, epoch, "offset" FROM messages WHERE ts < ?1 LIMIT ?2)`,
  );
  deleteOldDirects = prepare(
    `DELETE FROM inbox WHERE (user_id, "offset") IN (SELECT user_id, "offset" FROM inbox WHERE ts < ?1 LIMIT ?2)`,
  );
  selectDirect = prepare(
    `SELECT "offset" AS offset, id, ts FROM inbox
     WHERE user_id = ?1 AND sender = ?2 AND recipient = ?3 AND client_msg_id = ?4`,
  );
  selectInboxHead = prepare("SELECT head FROM inboxes WHERE user_id = ?1");
  upsertInbox = prepare(
    "INSERT INTO inboxes (user_id, head) VALUES (?1, ?2) ON CONFLICT (user_id) DO UPDATE SET head = excluded.head",
  );
  insertDirect = prepare(
    `INSERT INTO inbox (user_id, "offset", id, sender, recipient, text, ts, client_msg_id)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)`,
  );
  trimInbox = prepare(`DELETE FROM inbox WHERE user_id = ?1 AND "offset" <= ?2`);
}

type DirectResult = [offset: number, id: string, ts: number, duplicate: 0 | 1];

/**
 * Appends to an inbox: its next offset, unless it keeps an entry of the same sender,
 * recipient and clientMsgId (the unique index), which is answered instead. Older entries past `size` are deleted.
 */
function appendDirect(row: unknown[], size: number): DirectResult {
  const [owner, id, from, to, text, ts, clientMsgId] = row as [string, string, string, string, string, number, string];
  const kept = selectDirect.get(owner, from, to, clientMsgId);
  if (kept) return [kept.offset, kept.id, kept.ts, 1];
  const offset = (selectInboxHead.get(owner)?.head ?? 0) + 1;
  insertDirect.run(owner, offset, id, from, to, text, ts, clientMsgId);
  upsertInbox.run(owner, offset);
  if (offset > size) trimInbox.run(owner, offset - size);
  return [offset, id, ts, 0];
}

/** Commits one batch; returns the messages its retention step deleted and the inbox appends' results. */
function write(
  rows: unknown[],
  reads: unknown[],
  directs: unknown[],
  inboxSize: number,
  expireBefore?: number,
  expireLimit = 0,
): { deleted: number; directs: DirectResult[] } {
  const heads = new Map<string, [epoch: unknown, head: number]>();
  return db!
    .transaction(() => {
      for (let i = 0; i < rows.length; i += FIELDS_PER_MESSAGE) {
        const epoch = rows[i] as string;
        const m = rows[i + 1] as RoomMessage;
        const room = m.room;
        const offset = m.offset;
        // Values bound one by one: no array per row.
        insertMessage.run(room, epoch, offset, m.id, m.from, m.text, m.ts, m.clientMsgId);
        const known = heads.get(room);
        if (!known || known[0] !== epoch || known[1] < offset) heads.set(room, [epoch, offset]);
      }
      for (const [room, [epoch, head]] of heads) upsertRoom.run(room, epoch as string, head);
      for (let i = 0; i < reads.length; i += FIELDS_PER_READ) {
        upsertRead.run(...(reads.slice(i, i + FIELDS_PER_READ) as string[]));
      }
      const appended: DirectResult[] = [];
      for (let i = 0; i < directs.length; i += FIELDS_PER_DIRECT) {
        appended.push(appendDirect(directs.slice(i, i + FIELDS_PER_DIRECT), inboxSize));
      }
      const deleted =
        expireBefore === undefined
          ? 0
          : deleteOld.run(expireBefore, expireLimit).changes + deleteOldDirects.run(expireBefore, expireLimit).changes;
      return { deleted, directs: appended };
    })
    .immediate();
}

self.onmessage = (event: MessageEvent<WriterRequest>) => {
  const request = event.data;
  let reply: WriterReply;
  try {
    if (request.type === "open") {
      open(request.file, request.busyTimeoutMs, request.synchronous);
      reply = { ok: true };
    } else if (request.type === "close") {
      close();
      reply = { ok: true };
    } else {
      const rows = JSON.parse(request.rows) as unknown[];
      const reads = JSON.parse(request.reads) as unknown[];
      const directs = JSON.parse(request.directs) as unknown[];
      const done = write(rows, reads, directs, request.inboxSize, request.expireBefore, request.expireLimit);
      reply = { ok: true, deleted: done.deleted, directs: done.directs.length > 0 ? done.directs : undefined };
    }
  } catch (error) {
    reply = { ok: false, error: (error as Error).message };
  }
  self.postMessage(reply);
};
