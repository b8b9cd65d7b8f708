import type { DirectMessage } from "../protocol/server-frames";

/** A direct message as kept in one user's inbox: `offset` counts in that inbox's epoch. */
export interface InboxEntry extends DirectMessage {
  offset: number;
}

/** The result of an append: the entry the inbox holds (the first one, for a repeat). */
export interface InboxAppend {
  epoch: string;
  entry: InboxEntry;
  /** The inbox already held this (from, to, clientMsgId): nothing was added. */
  duplicate: boolean;
}

/** What a resume reads: the inbox's epoch and newest offset, and the entries after the client's. */
export interface InboxReplay {
  epoch: string;
  /** The newest offset of the epoch (0 for an inbox never written). */
  offset: number;
  /** Entries after the resume point, oldest first (all kept ones of the epoch for another epoch). */
  messages: InboxEntry[];
  /** Every entry after the resume point is still kept (false after a trim, an expiry or a new epoch). */
  complete: boolean;
}

/**
 * Each user's direct messages: the ones they received and the ones they sent (so their other
 * devices see both sides), with dense offsets from 1 in the inbox's epoch.
 * Guarantees: an append resolves only once the entry is kept (committed, for a database; in Redis,
 * for Redis), and every instance sharing the store sees it then; an inbox holds one entry per
 * (from, to, clientMsgId) while it keeps that entry (with Redis, for DEDUP_WINDOW), so a resend
 * returns the first entry unchanged;
 * offsets never name two entries: an inbox that lost its entries (Redis keys expired or flushed, a
 * memory inbox forgotten) starts a new epoch. Bounded: an inbox keeps its newest `INBOX_SIZE`
 * entries, and forgets an entry after `INBOX_TTL` (Redis, memory) or `MESSAGE_RETENTION_DAYS` (SQLite).
 */
export interface InboxStore {
  append(owner: string, message: DirectMessage): Promise<InboxAppend>;
  /**
   * The inbox's head, and with `after` the entries above it: in `epoch` when given and current,
   * otherwise (another epoch) every entry kept in the current one. At most `limit`, oldest first.
   */
  since(owner: string, after: number | undefined, epoch: string | undefined, limit: number): Promise<InboxReplay>;
  close(): Promise<void>;
}

/** Where a replay starts in the current epoch: a client of another epoch gets the whole inbox. */
export function replayFrom(current: string, after: number | undefined, epoch: string | undefined) {
  if (after === undefined) return undefined;
  return epoch === undefined || epoch === current ? after : 0;
}

/** Builds the replay from the kept entries above `from` (oldest first). */
export function replay(
  epoch: string,
  head: number,
  from: number | undefined,
  messages: InboxEntry[],
  askedEpoch: string | undefined,
): InboxReplay {
  if (from === undefined) return { epoch, offset: head, messages: [], complete: true };
  const sameEpoch = askedEpoch === undefined || askedEpoch === epoch;
  const first = messages[0]?.offset;
  const complete = sameEpoch && (first === undefined ? from === head : first === from + 1);
  return { epoch, offset: head, messages, complete };
}
