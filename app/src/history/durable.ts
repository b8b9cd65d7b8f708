import { frames, type RoomMessage } from "../protocol/server-frames";
import { StoreUnavailable } from "../redis/unavailable";
import type { MessageStore } from "../store/store";
import type { AppendResult, HistoryStore, MessageDraft, Replay, RoomHead } from "./history";
import { TurnPacer } from "./turn-pacer";

/**
 * Most messages one `join` replays from the database. A client further behind gets `recovered:
 * false` and pages back with `history` instead of receiving an unbounded burst.
 */
export const MAX_REPLAY = 10_000;

/**
 * Bytes of committed messages (text plus about 200 of frame) released to the acknowledgements and
 * fan-out per event-loop turn (see TurnPacer) unless told otherwise: half of the 64 KiB the smallest
 * BACKPRESSURE_LIMIT_BYTES allows a socket between two turns.
 */
export const DEFAULT_RELEASE_BYTES_PER_TURN = 32_768;

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
   * Writes the database refused, by sender and clientMsgId. The hot store answers a resend as a
   * duplicate; the answer retries the write first, so no ack precedes a commit.
   */
  private readonly refused = new Map<string, { epoch: string; message: RoomMessage }>();
  /** Spreads a large commit's acknowledgements and fan-out over several turns, in offset order. */
  private readonly release: TurnPacer;

  /**
   * `releaseBytesPerTurn`: well below what a socket may buffer (BACKPRESSURE_LIMIT_BYTES), so that a
   * member reading at full speed is never past the limit between two turns. Each turn above one
   * costs a commit's last messages a timer's delay, so it is no smaller than it needs to be.
   */
  constructor(
    readonly hot: HistoryStore,
    readonly store: MessageStore,
    options: { releaseBytesPerTurn?: number } = {},
  ) {
    this.release = new TurnPacer(options.releaseBytesPerTurn ?? DEFAULT_RELEASE_BYTES_PER_TURN);
  }

  append(draft: MessageDraft): Promise<AppendResult> {
    // The hot store's synchronous step when it has one: no promise or turn of the microtask queue.
    if (this.hot.appendNow) return this.afterHot(draft, this.hot.appendNow(draft));
    return this.hot.append(draft).then((result) => this.afterHot(draft, result));
  }

  private afterHot(draft: MessageDraft, result: AppendResult): Promise<AppendResult> {
    if (result.status === "stored") return this.commit(draft, result);
    if (result.status === "duplicate") return this.answerDuplicate(draft, result);
    return Promise.resolve(result);
  }

  /**
   * Resolves once the database committed the message and the pacer released it. One promise per
   * message, settled from the loop that settles its whole commit (SqliteMessageStore.writeThen):
   * awaiting the batch's shared promise instead cost a reaction, and the async function a promise
   * and a resumption, per message.
   */
  private commit(draft: MessageDraft, result: AppendResult & { status: "stored" }): Promise<AppendResult> {
    const { epoch, message } = result;
    const units = draft.text.length + 200;
    // The room's frame, built once: the database's batch is made of it, and the fan-out sends it.
    const frame = frames.message(message);
    result.frame = frame;
    return new Promise((resolve, reject) => {
      const committed = (error?: Error) => {
        if (error) {
          this.keepRefused(draft, epoch, message);
          // Not acknowledged: the client resends with the same clientMsgId, which retries this write.
          reject(new StoreUnavailable("message"));
          return;
        }
        this.release.admit(units, () => resolve(result));
      };
      if (this.store.writeThen) this.store.writeThen(epoch, message, frame, committed);
      else this.store.write(epoch, message).then(() => committed(), committed);
    });
  }

  /** The first send's commit may still be under way: answer once it is done, or retry it if refused. */
  private async answerDuplicate(draft: MessageDraft, result: AppendResult): Promise<AppendResult> {
    await this.store.settled();
    const key = refusedKey(draft);
    const write = this.refused.get(key);
    if (write) {
      try {
        await this.store.write(write.epoch, write.message);
      } catch {
        throw new StoreUnavailable("message");
      }
      this.refused.delete(key);
    }
    return result;
  }

  private keepRefused(draft: MessageDraft, epoch: string, message: RoomMessage) {
    this.refused.set(refusedKey(draft), { epoch, message });
    if (this.refused.size > MAX_REFUSED) this.refused.delete(this.refused.keys().next().value!);
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

function refusedKey(draft: MessageDraft) {
  return `${draft.from}\n${draft.clientMsgId}`;
}
