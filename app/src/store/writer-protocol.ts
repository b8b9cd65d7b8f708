// What the main thread and the SQLite writer thread (sqlite-writer.ts) send each other.

/**
 * Values per message in a batch: its epoch, then its `message` frame as the room receives it
 * (frames.message: room, id, offset, from, text, ts, clientMsgId).
 */
export const FIELDS_PER_MESSAGE = 2;
/** Values per read position in a batch: userId, room, epoch, offset. */
export const FIELDS_PER_READ = 4;
/** Values per inbox append in a batch: owner, id, from, to, text, ts, clientMsgId. */
export const FIELDS_PER_DIRECT = 7;

/**
 * `open` once, then one `write` per batch: its messages (FIELDS_PER_MESSAGE values each; the main
 * thread joins the frames it built for the fan-out, which costs it no encoding) and read
 * positions (FIELDS_PER_READ each) as two JSON arrays, and with `expireBefore` the deletion of up
 * to `expireLimit` messages older than it (ms since the epoch), committed in one transaction. Each
 * request gets one reply, in order; `deleted` counts the messages the deletion removed.
 * Inbox appends (FIELDS_PER_DIRECT values each) get their offsets in the writer, in the same
 * transaction; `directs` answers each with [offset, id, ts, duplicate 0/1] (a repeat of a kept
 * (owner, from, to, clientMsgId) answers the kept entry). Each inbox keeps its newest `inboxSize`.
 * `close`, once the last write is answered, closes the writer's connection before the thread stops.
 */
export type WriterRequest =
  | { type: "open"; file: string; busyTimeoutMs: number; synchronous: "full" | "normal" }
  | { type: "close" }
  | {
      type: "write";
      rows: string;
      reads: string;
      directs: string;
      inboxSize: number;
      expireBefore?: number;
      expireLimit?: number;
    };
export type WriterReply =
  | { ok: true; deleted?: number; directs?: [number, string, number, 0 | 1][] }
  | { ok: false; error: string };
