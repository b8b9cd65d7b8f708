// What the main thread and the SQLite writer thread (sqlite-writer.ts) send each other.

/** Values per message in a batch, in this order: room, epoch, offset, id, from, text, ts, clientMsgId. */
export const FIELDS_PER_MESSAGE = 8;
/** Values per read position in a batch: userId, room, epoch, offset. */
export const FIELDS_PER_READ = 4;

/**
 * `open` once, then one `write` per batch: its messages (FIELDS_PER_MESSAGE values each) and read
 * positions (FIELDS_PER_READ each) as two JSON arrays, and with `expireBefore` the deletion of up
 * to `expireLimit` messages older than it (ms since the epoch), committed in one transaction. Each
 * request gets one reply, in order; `deleted` counts the messages the deletion removed.
 */
export type WriterRequest =
  | { type: "open"; file: string; busyTimeoutMs: number }
  | { type: "write"; rows: string; reads: string; expireBefore?: number; expireLimit?: number };
export type WriterReply = { ok: true; deleted?: number } | { ok: false; error: string };
