import { randomUUIDv7 } from "bun";
import { MemoryDedupStore } from "../dedup/memory";
import type { RoomMessage } from "../protocol/server-frames";
import type { AppendReceipt, AppendResult, HistoryStore, MessageDraft, Replay, RoomHead } from "./history";

interface RoomLog {
  epoch: string;
  offset: number;
  messages: RoomMessage[];
  touchedAt: number;
}

export interface MemoryHistoryOptions {
  historySize: number;
  ttlSeconds: number;
  /** How long a (from, clientMsgId) pair is remembered. */
  dedupWindowSeconds: number;
  now?: () => number;
}

/** Keeps history in this process only: a restart starts every room in a new epoch. */
export class MemoryHistoryStore implements HistoryStore {
  private readonly rooms = new Map<string, RoomLog>();
  private readonly now: () => number;
  /** Receipts of stored messages by (from, clientMsgId). */
  private readonly receipts: MemoryDedupStore;

  constructor(private readonly options: MemoryHistoryOptions) {
    this.now = options.now ?? Date.now;
    this.receipts = new MemoryDedupStore(options.dedupWindowSeconds, this.now);
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

  async append(draft: MessageDraft): Promise<AppendResult> {
    // Looked up, stored and recorded in one synchronous step: no other append can come in between.
    const seen = this.receipts.lookup(draft.from, draft.clientMsgId);
    if (seen) return { status: "duplicate", receipt: seen.answer as AppendReceipt };
    const log = this.log(draft.room);
    const message: RoomMessage = {
      room: draft.room,
      id: draft.id,
      offset: ++log.offset,
      from: draft.from,
      text: draft.text,
      ts: draft.ts,
      clientMsgId: draft.clientMsgId,
    };
    log.touchedAt = this.now();
    if (this.options.historySize > 0) {
      log.messages.push(message);
      if (log.messages.length > this.options.historySize) log.messages.shift();
    }
    const receipt: AppendReceipt = { room: message.room, id: message.id, offset: message.offset, ts: message.ts };
    this.receipts.record(draft.from, draft.clientMsgId, receipt);
    return { status: "stored", message, epoch: log.epoch, published: false };
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
    await this.receipts.close();
  }
}
