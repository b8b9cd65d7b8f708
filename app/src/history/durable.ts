import type { RoomMessage } from "../protocol/server-frames";
import { StoreUnavailable } from "../redis/unavailable";
import type { MessageStore } from "../store/store";
import type { AppendResult, HistoryStore, MessageDraft, Replay, RoomHead } from "./history";

/**
 * Most messages one `join` replays from the database. A client further behind gets `recovered:
 * false` and pages back with `history` instead of receiving an unbounded burst.
 */
export const MAX_REPLAY = 10_000;

/** Refused writes kept for a resend; past this the oldest is forgotten (its message stays in memory only). */
const MAX_REFUSED = 10_000;

/**
 * The hot history (the newest messages of each room, in memory) in front of a database holding all
 * of them. A message is acknowledged once both hold it: the hot store assigns its offset, then the
 * database commits it (batched, see SqliteMessageStore), and only then does `append` resolve, so the
 * sender's ack and the fan-out both follow the commit. Reads take what the hot store holds and the
 * rest from the database, seamlessly: `before` pages back through the whole conversation and `since`
 * replays a client that was away longer than the hot window.
 *
 * The hot store is built with `resume` reading the database's head, so a room keeps its epoch and
 * offsets across restarts.
 */
export class DurableHistoryStore implements HistoryStore {
  /**
   * Writes not committed yet, or refused, by sender and clientMsgId. The hot store answers a resend
   * as a duplicate at once; the answer waits for (or retries) the write, so no ack precedes a commit.
   */
  private readonly writes = new Map<string, { epoch: string; message: RoomMessage; done?: Promise<void> }>();

  constructor(
    readonly hot: HistoryStore,
    readonly store: MessageStore,
  ) {}

  async append(draft: MessageDraft): Promise<AppendResult> {
    const result = await this.hot.append(draft);
    const key = `${draft.from}\n${draft.clientMsgId}`;
    if (result.status === "stored") await this.commit(key, result.epoch, result.message);
    else if (result.status === "duplicate") {
      const write = this.writes.get(key);
      if (write) await this.commit(key, write.epoch, write.message);
    }
    return result;
  }

  /** Writes a message (or joins its write under way); a refused write is kept for the client's resend. */
  private async commit(key: string, epoch: string, message: RoomMessage) {
    let write = this.writes.get(key);
    if (!write) {
      write = { epoch, message };
      this.writes.set(key, write);
      if (this.writes.size > MAX_REFUSED) this.writes.delete(this.writes.keys().next().value!);
    }
    write.done ??= this.store.write(epoch, message);
    try {
      await write.done;
      this.writes.delete(key);
    } catch {
      write.done = undefined;
      // Not acknowledged: the client resends with the same clientMsgId, which retries this write.
      throw new StoreUnavailable("message");
    }
  }

  head(room: string): Promise<RoomHead> {
    return this.hot.head(room);
  }

  async since(room: string, afterOffset: number, epoch?: string): Promise<Replay> {
    const replay = await this.hot.since(room, afterOffset, epoch);
    if (replay.complete || (epoch !== undefined && epoch !== replay.epoch)) return replay;
    const head = await this.hot.head(room);
    if (head.epoch !== replay.epoch || afterOffset >= head.offset) return replay;
    // The hot store holds the newest part; the database fills in from just after `afterOffset`.
    const firstHot = replay.messages[0]?.offset ?? head.offset + 1;
    const gap = firstHot - afterOffset - 1;
    if (gap + replay.messages.length > MAX_REPLAY) return replay;
    const older = this.store.after(room, replay.epoch, afterOffset, firstHot, gap).messages;
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
    // Below the oldest message the hot store returned (or the page's start), from the database.
    const below = hot.messages[0]?.offset ?? Math.min(before ?? head.offset + 1, head.offset + 1);
    const older = this.store.before(room, head.epoch, below, limit - hot.messages.length);
    return { messages: [...older.messages, ...hot.messages], hasMore: older.hasMore };
  }

  async close() {
    await this.hot.close();
    await this.store.close();
  }
}
