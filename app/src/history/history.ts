import type { RoomMessage } from "../protocol/server-frames";

export type MessageDraft = Omit<RoomMessage, "offset">;

/** What a repeat of a stored message is answered with: where and when the first one was stored. */
export type AppendReceipt = {
  room: string;
  id: string;
  offset: number;
  ts: number;
};

export type AppendResult =
  /**
   * Stored under the room's next offset. `published` is true when the store has also sent it to
   * every instance, this one included, through the backplane (in offset order, since both happen in
   * one step); otherwise the caller delivers it. `frame`, when the store built it, is the message's
   * `message` frame (frames.message), for the caller to send as it is.
   */
  | { status: "stored"; message: RoomMessage; epoch: string; published: boolean; frame?: string }
  /** The same sender stored the same clientMsgId within the dedup window: nothing was stored. */
  | { status: "duplicate"; receipt: AppendReceipt }
  /** Another server of an older release is still storing this clientMsgId; the client retries. */
  | { status: "pending" };

export interface RoomHead {
  /** Changes whenever the room's stored history is lost; offsets restart with a new epoch. */
  epoch: string;
  /** Offset of the newest message, 0 for an empty room. */
  offset: number;
  /**
   * The offset the epoch began after (its first message is `start + 1`), when the store knows it:
   * a receiver that missed the first messages of a new epoch reads them from there.
   */
  start?: number;
}

export interface Replay {
  epoch: string;
  /** Messages with an offset above the one asked for, oldest first. */
  messages: RoomMessage[];
  /** False when the epoch differs or some messages after the offset are no longer stored. */
  complete: boolean;
}

/**
 * Per-room message history.
 * Guarantees: offsets of a room are dense and increasing (1, 2, 3, ...) within an epoch, whichever
 * instance appends; at most `historySize` newest messages are kept; a room idle past the history TTL
 * is forgotten and starts a new epoch; a message is stored once per (from, clientMsgId) within the
 * dedup window, whichever instance it is sent to.
 */
export interface HistoryStore {
  /**
   * Stores a message unless its sender already stored its clientMsgId within the dedup window. The
   * check and the write are one step, so two instances given the same message store it once.
   */
  append(draft: MessageDraft): Promise<AppendResult>;
  /**
   * The same as `append`, done in one synchronous step, for a store that needs no I/O to store (the
   * in-memory one). The chat uses it when present: a message then costs no promise, and its
   * acknowledgement and fan-out leave in the turn it arrived in.
   */
  appendNow?(draft: MessageDraft): AppendResult;
  head(room: string): Promise<RoomHead>;
  /** Messages after `afterOffset` when `epoch` (if given) is still the room's epoch. */
  since(room: string, afterOffset: number, epoch?: string): Promise<Replay>;
  /** Up to `limit` newest messages with an offset below `before` (all when omitted), oldest first. */
  before(
    room: string,
    before: number | undefined,
    limit: number,
  ): Promise<{ messages: RoomMessage[]; hasMore: boolean }>;
  close(): Promise<void>;
}
