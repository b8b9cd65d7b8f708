import type { RoomMessage } from "../protocol/server-frames";
import { StoreUnavailable } from "../redis/unavailable";
import type { StoredPage } from "../store/store";
import { MAX_REPLAY } from "./durable";
import type { AppendResult, HistoryStore, MessageDraft, Replay, RoomHead } from "./history";

/** Longest wait for a database read; a hung database is then answered like a down one. */
const READ_TIMEOUT_MS = 3000;

/** The reads of a database the hot history's messages are written behind into. */
export interface MessageArchive {
  /** Messages of the epoch with `after < offset < before`, oldest first, at most `limit`. */
  after(room: string, epoch: string, after: number, before: number, limit: number): Promise<StoredPage>;
  /** The newest `limit` messages of the epoch with an offset below `before`, oldest first. */
  before(room: string, epoch: string, before: number, limit: number): Promise<StoredPage>;
}

/**
 * The Redis history in front of a database its messages are written behind into (see
 * RedisPersister). Appends go to Redis alone: the acknowledgement follows the Redis append, not the
 * database. Reads take what Redis holds and the rest from the database, seamlessly: nothing falls
 * between the two, since the log is never trimmed past what the database holds, and Redis is read
 * first (the database only gains messages meanwhile).
 */
export class ArchivedHistoryStore implements HistoryStore {
  constructor(
    readonly hot: HistoryStore,
    readonly archive: MessageArchive,
  ) {}

  append(draft: MessageDraft): Promise<AppendResult> {
    return this.hot.append(draft);
  }

  head(room: string): Promise<RoomHead> {
    return this.hot.head(room);
  }

  async since(room: string, afterOffset: number, epoch?: string): Promise<Replay> {
    const replay = await this.hot.since(room, afterOffset, epoch);
    if (replay.complete || (epoch !== undefined && epoch !== replay.epoch)) return replay;
    const head = await this.hot.head(room);
    if (head.epoch !== replay.epoch || afterOffset >= head.offset) return replay;
    const firstHot = replay.messages[0]?.offset ?? head.offset + 1;
    const gap = firstHot - afterOffset - 1;
    if (gap + replay.messages.length > MAX_REPLAY) return replay;
    let older: RoomMessage[];
    try {
      older = (await bounded(this.archive.after(room, replay.epoch, afterOffset, firstHot, gap))).messages;
    } catch {
      // The database is down: the join goes on with what Redis holds (`recovered: false`).
      return replay;
    }
    const complete = older.length === gap && (gap === 0 || older[0]!.offset === afterOffset + 1);
    return { epoch: replay.epoch, messages: [...older, ...replay.messages], complete };
  }

  async before(
    room: string,
    before: number | undefined,
    limit: number,
  ): Promise<{ messages: RoomMessage[]; hasMore: boolean }> {
    const hot = await this.hot.before(room, before, limit);
    if (hot.hasMore) return hot;
    const head = await this.hot.head(room);
    const below = hot.messages[0]?.offset ?? Math.min(before ?? head.offset + 1, head.offset + 1);
    let older: StoredPage;
    try {
      older = await bounded(this.archive.before(room, head.epoch, below, limit - hot.messages.length));
    } catch {
      throw new StoreUnavailable("message database");
    }
    return { messages: [...older.messages, ...hot.messages], hasMore: older.hasMore };
  }

  close() {
    return this.hot.close();
  }
}

/** `read`, or a rejection once READ_TIMEOUT_MS passed without an answer. */
async function bounded<T>(read: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("the message database did not answer")), READ_TIMEOUT_MS);
  });
  try {
    return await Promise.race([read, late]);
  } finally {
    clearTimeout(timer);
  }
}
