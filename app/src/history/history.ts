import type { RoomMessage } from "../protocol/server-frames";

export type MessageDraft = Omit<RoomMessage, "offset">;

export interface RoomHead {
  /** Changes whenever the room's stored history is lost; offsets restart with a new epoch. */
  epoch: string;
  /** Offset of the newest message, 0 for an empty room. */
  offset: number;
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
 * is forgotten and starts a new epoch.
 */
export interface HistoryStore {
  /**
   * Stores a message under the room's next offset. `published` is true when the store has also sent
   * it to every instance, this one included, through the backplane (in offset order, since both
   * happen in one step); otherwise the caller delivers it.
   */
  append(draft: MessageDraft): Promise<{ message: RoomMessage; epoch: string; published?: boolean }>;
  head(room: string): Promise<RoomHead>;
  /** Messages after `afterOffset` when `epoch` (if given) is still the room's epoch. */
  since(room: string, afterOffset: number, epoch?: string): Promise<Replay>;
  /** Up to `limit` newest messages with an offset below `before` (all when omitted), oldest first. */
  before(room: string, before: number | undefined, limit: number): Promise<{ messages: RoomMessage[]; hasMore: boolean }>;
  close(): Promise<void>;
}
