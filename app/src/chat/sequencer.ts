import type { HistoryStore } from "../history/history";
import { frames } from "../protocol/server-frames";

interface RoomSequence {
  epoch: string;
  /** Newest offset delivered to this instance's subscribers. */
  last: number;
  /** Arrivals held back while a gap is being filled from history. */
  queue: { frame: string; offset: number }[] | undefined;
}

/**
 * Delivers each room's messages to this instance's subscribers once and in offset order, whether
 * they were stored here or arrived from another instance. An arrival more than one past the last
 * delivered offset means pub/sub lost something: the missing messages are read from history and
 * delivered first. A message at or below the last delivered offset is a duplicate and is dropped.
 */
export class RoomSequencer {
  private readonly rooms = new Map<string, RoomSequence>();

  constructor(
    private readonly history: HistoryStore,
    private readonly deliver: (room: string, frame: string) => void,
    private readonly onGapFilled: (count: number) => void = () => {},
  ) {}

  /** Newest delivered offset of a room in its current epoch, if this instance has seen it. */
  last(room: string, epoch: string): number | undefined {
    const seq = this.rooms.get(room);
    return seq && seq.epoch === epoch ? seq.last : undefined;
  }

  /** Starts tracking a room at a known head (when its first local member joins). */
  track(room: string, epoch: string, offset: number) {
    const seq = this.rooms.get(room);
    if (!seq || seq.epoch !== epoch) this.rooms.set(room, { epoch, last: offset, queue: undefined });
  }

  forget(room: string) {
    this.rooms.delete(room);
  }

  /** Offers a message for delivery; `frame` is its serialised `message` frame. */
  offer(room: string, epoch: string, offset: number, frame: string) {
    let seq = this.rooms.get(room);
    if (!seq || seq.epoch !== epoch) {
      // A new epoch (history lost) restarts the offsets: nothing before it can be a duplicate.
      seq = { epoch, last: offset - 1, queue: undefined };
      this.rooms.set(room, seq);
    }
    if (seq.queue) {
      seq.queue.push({ frame, offset });
      return;
    }
    if (offset <= seq.last) return;
    if (offset === seq.last + 1) {
      seq.last = offset;
      this.deliver(room, frame);
      return;
    }
    seq.queue = [{ frame, offset }];
    void this.fill(room, seq);
  }

  private async fill(room: string, seq: RoomSequence) {
    try {
      const replay = await this.history.since(room, seq.last, seq.epoch);
      let filled = 0;
      const waiting = seq.queue ?? [];
      const upTo = Math.min(...waiting.map((w) => w.offset));
      for (const message of replay.messages) {
        if (message.offset >= upTo) break;
        if (message.offset <= seq.last) continue;
        seq.last = message.offset;
        this.deliver(room, frames.message(message));
        filled++;
      }
      if (filled > 0) this.onGapFilled(filled);
    } catch {
      // History unreachable: deliver what arrived rather than hold the room back.
    }
    const waiting = (seq.queue ?? []).sort((a, b) => a.offset - b.offset);
    seq.queue = undefined;
    for (const item of waiting) {
      if (item.offset <= seq.last) continue;
      seq.last = item.offset;
      this.deliver(room, item.frame);
    }
  }
}
