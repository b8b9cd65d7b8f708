import { randomUUIDv7 } from "bun";
import type { HistoryStore, MessageDraft, Replay, RoomHead } from "./history";
import type { RoomMessage } from "../protocol/server-frames";

interface RoomLog {
  epoch: string;
  offset: number;
  messages: RoomMessage[];
  touchedAt: number;
}

export interface MemoryHistoryOptions {
  historySize: number;
  ttlSeconds: number;
  now?: () => number;
}

/** Keeps history in this process only: a restart starts every room in a new epoch. */
export class MemoryHistoryStore implements HistoryStore {
  private readonly rooms = new Map<string, RoomLog>();
  private readonly now: () => number;

  constructor(private readonly options: MemoryHistoryOptions) {
    this.now = options.now ?? Date.now;
  }

  private log(room: string): RoomLog {
    const now = this.now();
    let log = this.rooms.get(room);
    if (!log || now - log.touchedAt > this.options.ttlSeconds * 1000) {
      log = { epoch: randomUUIDv7(), offset: 0, messages: [], touchedAt: now };
      this.rooms.set(room, log);
    }
    return log;
  }

  async append(draft: MessageDraft) {
    const log = this.log(draft.room);
    const message: RoomMessage = { ...draft, offset: ++log.offset };
    log.touchedAt = this.now();
    if (this.options.historySize > 0) {
      log.messages.push(message);
      if (log.messages.length > this.options.historySize) log.messages.shift();
    }
    return { message, epoch: log.epoch };
  }

  async head(room: string): Promise<RoomHead> {
    const log = this.log(room);
    return { epoch: log.epoch, offset: log.offset };
  }

  async since(room: string, afterOffset: number, epoch?: string): Promise<Replay> {
    const log = this.log(room);
    if (epoch !== undefined && epoch !== log.epoch) return { epoch: log.epoch, messages: [], complete: false };
    if (afterOffset >= log.offset) return { epoch: log.epoch, messages: [], complete: afterOffset === log.offset };
    const oldest = log.messages[0]?.offset ?? log.offset + 1;
    const messages = log.messages.filter((m) => m.offset > afterOffset);
    return { epoch: log.epoch, messages, complete: oldest <= afterOffset + 1 };
  }

  async before(room: string, before: number | undefined, limit: number) {
    const log = this.log(room);
    const older = before === undefined ? log.messages : log.messages.filter((m) => m.offset < before);
    const messages = older.slice(Math.max(0, older.length - limit));
    return { messages, hasMore: older.length > messages.length };
  }

  async close() {
    this.rooms.clear();
  }
}
