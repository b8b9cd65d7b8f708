import type { HistoryStore, RoomHead } from "../history/history";
import { frames } from "../protocol/server-frames";

interface RoomSequence {
  epoch: string;
  /** Newest offset delivered to this instance's subscribers. */
  last: number;
  /** The offset tracking began after: every later one was delivered here. */
  from: number;
  /** Arrivals held back while a gap is being filled from history. */
  queue: { frame: string; offset: number }[] | undefined;
}

/**
 * Delivers each room's messages to this instance's subscribers once and in offset order, whether
 * they were stored here or arrived from another instance. An arrival more than one past the last
 * delivered offset means pub/sub lost something: the missing messages are read from history and
 * delivered first. A message at or below the last delivered offset is a duplicate and is dropped.
 * When a room's epoch changes (its history was lost, or Redis came back with less than it had),
 * its members here get an `epoch` frame before the first message of the new epoch.
 */
const BACKWARDS_CHECK_INTERVAL_MS = 1000;
/**
 * How long history is asked to fill a gap, start a new epoch or catch up after a lost subscription:
 * during a failover or a slot move the store may refuse reads for a few seconds (until every shard
 * answers again), and the room's messages wait meanwhile rather than skip what was missed.
 */
const HEAD_RETRY_MS = 250;
const HEAD_ATTEMPTS = 24;
const MAX_CHECKED_ROOMS = 10_000;

export class RoomSequencer {
  private readonly rooms = new Map<string, RoomSequence>();
  /** When each room was last checked for a store that went backwards (see checkBackwards). */
  private readonly checkedAt = new Map<string, number>();

  constructor(
    private readonly history: HistoryStore,
    private readonly deliver: (room: string, frame: string) => void,
    private readonly onGapFilled: (count: number) => void = () => {},
  ) {}

  /** Rooms tracked: those with a local member, and those released less than the release delay ago. */
  get size() {
    return this.rooms.size;
  }

  /** Newest delivered offset of a room in its current epoch, if this instance has seen it. */
  last(room: string, epoch: string): number | undefined {
    const seq = this.rooms.get(room);
    return seq && seq.epoch === epoch ? seq.last : undefined;
  }

  /** Where a room stands now (epoch, newest delivered, where tracking began), if tracked. */
  state(room: string): Readonly<Pick<RoomSequence, "epoch" | "last" | "from">> | undefined {
    const seq = this.rooms.get(room);
    return seq && { epoch: seq.epoch, last: seq.last, from: seq.from };
  }

  /** Starts tracking a room at a known head (when its first local member joins). */
  track(room: string, epoch: string, offset: number) {
    const seq = this.rooms.get(room);
    if (seq && seq.epoch === epoch) return;
    this.rooms.set(room, { epoch, last: offset, from: offset, queue: undefined });
    if (seq) this.deliver(room, frames.epoch(room, epoch, offset));
  }

  forget(room: string) {
    this.rooms.delete(room);
  }

  /** Offers a message for delivery; `frame` is its serialised `message` frame. */
  offer(room: string, epoch: string, offset: number, frame: string) {
    let seq = this.rooms.get(room);
    if (seq && seq.epoch !== epoch) {
      // A new epoch (history lost) restarts the offsets: nothing before it can be a duplicate. Its
      // first messages may have been published before this instance was subscribed again (after a
      // failover): where it started is read first, and they are filled in from there.
      seq = { epoch, last: offset - 1, from: offset - 1, queue: [{ frame, offset }] };
      this.rooms.set(room, seq);
      void this.startEpoch(room, seq);
      return;
    }
    if (!seq) {
      seq = { epoch, last: offset - 1, from: offset - 1, queue: undefined };
      this.rooms.set(room, seq);
    }
    if (seq.queue) {
      seq.queue.push({ frame, offset });
      return;
    }
    if (offset <= seq.last) {
      this.checkBackwards(room, seq);
      return;
    }
    if (offset === seq.last + 1) {
      seq.last = offset;
      this.deliver(room, frame);
      return;
    }
    seq.queue = [{ frame, offset }];
    void this.fill(room, seq);
  }

  /**
   * An arrival at or below the last delivered offset is usually a duplicate (a gap filled from history
   * before pub/sub caught up). It can also be a new message numbered again by a Redis that came back
   * with less than this instance had delivered, stored by an instance new to the room that had no
   * floor to compare with. Reading the head passes this instance's floor to the store, which then
   * gives the room a new epoch; members here get the `epoch` frame instead of silently missing the
   * renumbered messages. At most one check per room at a time and per second.
   */
  private checkBackwards(room: string, seq: RoomSequence) {
    const now = Date.now();
    if (now < (this.checkedAt.get(room) ?? 0) + BACKWARDS_CHECK_INTERVAL_MS) return;
    this.checkedAt.set(room, now);
    if (this.checkedAt.size > MAX_CHECKED_ROOMS) this.checkedAt.delete(this.checkedAt.keys().next().value!);
    this.history.head(room).then(
      (head) => {
        if (this.rooms.get(room) === seq && head.epoch !== seq.epoch) this.track(room, head.epoch, head.offset);
      },
      () => {
        // Storage unreachable: the next arrival at or below the last offset checks again.
      },
    );
  }

  /**
   * Delivers what history holds beyond the last delivered offset of a tracked room (its envelopes
   * may have been lost while the backplane was away); a changed epoch is announced as on arrival.
   */
  async catchUp(room: string) {
    const seq = this.rooms.get(room);
    // A fill in progress reads history anyway.
    if (!seq || seq.queue) return;
    const head = await this.headOf(room, () => this.rooms.get(room) === seq && !seq.queue);
    // History unreachable: the room's next arrival fills the gap.
    if (!head || this.rooms.get(room) !== seq || seq.queue) return;
    if (head.epoch === seq.epoch) {
      if (head.offset <= seq.last) return;
      // Arrivals wait in the queue while history is read.
      seq.queue = [];
      await this.fill(room, seq);
      return;
    }
    const start = head.start ?? head.offset;
    const next: RoomSequence = { epoch: head.epoch, last: start, from: start, queue: [] };
    this.rooms.set(room, next);
    this.deliver(room, frames.epoch(room, next.epoch, start));
    await this.fill(room, next);
  }

  /** Announces a new epoch from where it started (when the store knows), then delivers it in order. */
  private async startEpoch(room: string, seq: RoomSequence) {
    // History unreachable: the epoch starts at the first arrival.
    const head = await this.headOf(room, () => this.rooms.get(room) === seq);
    if (this.rooms.get(room) !== seq) return;
    if (head && head.epoch === seq.epoch && head.start !== undefined && head.start < seq.last) {
      seq.last = head.start;
      seq.from = head.start;
    }
    this.deliver(room, frames.epoch(room, seq.epoch, seq.last));
    await this.fill(room, seq);
  }

  /** The room's head, asked again while the store refuses and `wanted()` holds; undefined if never. */
  private headOf(room: string, wanted: () => boolean): Promise<RoomHead | undefined> {
    return this.retried(() => this.history.head(room), wanted);
  }

  /** A history read, made again while the store refuses and `wanted()` holds; undefined if never. */
  private async retried<T>(read: () => Promise<T>, wanted: () => boolean): Promise<T | undefined> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await read();
      } catch {
        if (attempt >= HEAD_ATTEMPTS || !wanted()) return undefined;
        await new Promise((resolve) => setTimeout(resolve, HEAD_RETRY_MS));
      }
    }
  }

  /**
   * Bridges a gap: reads history after the last delivered offset and delivers, in order, everything
   * known (stored or queued). A message is stored before it is published, so a read made after an
   * arrival covers every offset below it; arrivals during the read are handled by another round. A
   * gap that a read cannot bridge (trimmed from history) is skipped rather than holding the room.
   */
  private async fill(room: string, seq: RoomSequence) {
    let filled = 0;
    // At least one round: catchUp starts it with an empty queue.
    do {
      const before = seq.last;
      const known = new Map<number, string>();
      // History unreachable (for longer than a failover's refusals): deliver what arrived rather
      // than hold the room back.
      const replay = await this.retried(
        () => this.history.since(room, seq.last, seq.epoch),
        () => true,
      );
      if (replay)
        for (const message of replay.messages)
          if (message.offset > seq.last) known.set(message.offset, frames.message(message));
      const queued = seq.queue ?? [];
      for (const item of queued) known.set(item.offset, item.frame);
      const queuedOffsets = new Set(queued.map((q) => q.offset));
      const deliverRun = () => {
        while (known.has(seq.last + 1)) {
          seq.last++;
          if (!queuedOffsets.has(seq.last)) filled++;
          this.deliver(room, known.get(seq.last)!);
        }
      };
      deliverRun();
      if (seq.last === before) {
        // Nothing bridged the gap: those messages are gone from history. Resume at the oldest known.
        const next = Math.min(...[...known.keys()].filter((o) => o > seq.last));
        if (Number.isFinite(next)) {
          seq.last = next - 1;
          deliverRun();
        }
      }
      const waiting = queued.filter((q) => q.offset > seq.last);
      seq.queue = waiting.length > 0 ? waiting : undefined;
    } while (seq.queue && seq.queue.length > 0);
    if (filled > 0) this.onGapFilled(filled);
  }
}
