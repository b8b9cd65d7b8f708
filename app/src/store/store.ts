import type { RoomHead } from "../history/history";
import type { RoomMessage } from "../protocol/server-frames";

/** One page of stored messages, oldest first. */
export interface StoredPage {
  messages: RoomMessage[];
  /** Whether the store holds more messages beyond the page, in the direction it was read. */
  hasMore: boolean;
}

/**
 * The database behind the hot history: every room message, kept until the retention deletes it.
 * Guarantees: a message is stored once per (room, epoch, offset) however often it is written; a
 * write resolves only once its messages are committed (on disk, for SQLite); reads see every write
 * that resolved. A room's head is the newest offset ever written in its newest epoch, and stays
 * after the retention deleted its messages, so offsets never restart under a client.
 */
export interface MessageStore {
  /** The room's newest epoch and offset, or undefined for a room never written. Synchronous: an embedded read. */
  head(room: string): RoomHead | undefined;
  /** Stores messages of one epoch; resolves once committed. Written again, a message is ignored. */
  write(epoch: string, message: RoomMessage): Promise<void>;
  /**
   * The same as `write`, without a promise: `done` is called once the message is committed (with
   * no argument) or refused (with the error), in the order of the writes. A store that commits
   * many writes together calls all of theirs in one loop. `done` must not throw. `frame` is the
   * message's `message` frame (frames.message), built for the fan-out anyway: the store may keep
   * it instead of encoding the message again.
   */
  writeThen?(epoch: string, message: RoomMessage, frame: string, done: (error?: Error) => void): void;
  /** Resolves once every write made before the call is committed or refused. */
  settled(): Promise<void>;
  /** Messages of the epoch with `after < offset < before`, oldest first, at most `limit`. */
  after(room: string, epoch: string, after: number, before: number, limit: number): StoredPage;
  /** The newest `limit` messages of the epoch with an offset below `before`, oldest first. */
  before(room: string, epoch: string, before: number, limit: number): StoredPage;
  close(): Promise<void>;
}
