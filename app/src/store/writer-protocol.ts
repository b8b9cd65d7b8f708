// What the main thread and the SQLite writer thread (sqlite-writer.ts) send each other.

/** Values per message in a batch, in this order: room, epoch, offset, id, from, text, ts, clientMsgId. */
export const FIELDS_PER_MESSAGE = 8;

/**
 * `open` once, then one `write` per batch, its values (FIELDS_PER_MESSAGE per message) as a JSON
 * array; each request gets one reply, in order.
 */
export type WriterRequest = { type: "open"; file: string; busyTimeoutMs: number } | { type: "write"; rows: string };
export type WriterReply = { ok: true } | { ok: false; error: string };
