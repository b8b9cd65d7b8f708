import { randomUUIDv7 } from "bun";
import { Counter, Gauge, type Registry } from "prom-client";
import { DedupWindow, pairKey } from "../dedup/window";
import type { RoomMessage } from "../protocol/server-frames";
import type { AppendReceipt, AppendResult, HistoryStore, MessageDraft, Replay, RoomHead } from "./history";

interface RoomLog {
  room: string;
  epoch: string;
  offset: number;
  messages: RoomMessage[];
  touchedAt: number;
}

/** One stored message in arrival order across all rooms, for evicting the oldest first. */
interface Stored {
  log: RoomLog;
  offset: number;
  bytes: number;
}

export interface MemoryHistoryOptions {
  historySize: number;
  ttlSeconds: number;
  /** How long a (from, clientMsgId) pair is remembered. */
  dedupWindowSeconds: number;
  /** Estimated bytes of messages kept across all rooms; the oldest are evicted past it. */
  maxBytes?: number;
  now?: () => number;
  /**
   * The epoch and newest offset a database holds for a room this store holds nothing of: the room
   * continues there instead of starting a new epoch (after a restart, or once its messages left
   * memory).
   */
  resume?: (room: string) => RoomHead | undefined;
}

/** 64 MiB of messages: about 6,500 messages of 10 KB, or 200,000 short ones. */
export const DEFAULT_HISTORY_MAX_BYTES = 64 * 1024 * 1024;
/** Object headers, the offset and the timestamp of a stored message, on top of its strings. */
const MESSAGE_OVERHEAD_BYTES = 120;

/**
 * Keeps history in this process only: a restart starts every room in a new epoch.
 *
 * Memory is bounded three ways: at most `historySize` messages per room, at most `maxBytes`
 * (estimated) across all rooms, the oldest evicted first whatever their room, and a room keeps no
 * state until its first message and after its history is gone (evicted, or idle past the TTL).
 * A room without state answers with the store's current empty epoch at offset 0; when a room that
 * had messages in that epoch is forgotten, the empty epoch changes, so its offsets never restart
 * within an epoch a client has seen.
 */
export class MemoryHistoryStore implements HistoryStore {
  private readonly rooms = new Map<string, RoomLog>();
  private readonly now: () => number;
  private readonly maxBytes: number;
  /** Receipts of stored messages by (from, clientMsgId). */
  private readonly receipts: DedupWindow<AppendReceipt>;
  private emptyEpoch = randomUUIDv7();
  /** Every stored message, oldest first; entries already trimmed or expired are skipped when reached. */
  private arrivals: Stored[] = [];
  private arrivalsHead = 0;
  private liveMessages = 0;
  private nextSweepAt = 0;
  /** Estimated bytes of the messages held. */
  bytes = 0;
  /** Messages dropped to stay within maxBytes. */
  evicted = 0;

  constructor(private readonly options: MemoryHistoryOptions) {
    this.now = options.now ?? Date.now;
    this.maxBytes = options.maxBytes ?? DEFAULT_HISTORY_MAX_BYTES;
    this.receipts = new DedupWindow(options.dedupWindowSeconds, this.now);
  }

  /** Rooms holding state (a message or an offset); an empty or abandoned room holds none. */
  get roomCount() {
    return this.rooms.size;
  }

  /** Exports the bytes held, the rooms held, the dedup pairs held and the evictions on a metrics registry. */
  observe(registry: Registry) {
    const store = this;
    new Gauge({
      name: "history_memory_bytes",
      help: "Estimated bytes of room messages held by the in-memory history",
      registers: [registry],
      collect() {
        this.set(store.bytes);
      },
    });
    new Gauge({
      name: "history_memory_rooms",
      help: "Rooms with messages in the in-memory history",
      registers: [registry],
      collect() {
        this.set(store.rooms.size);
      },
    });
    // Not bounded by the byte budget: it grows with the message rate times DEDUP_WINDOW.
    new Gauge({
      name: "history_memory_dedup_entries",
      help: "(sender, clientMsgId) pairs the in-memory history remembers for DEDUP_WINDOW",
      registers: [registry],
      collect() {
        this.set(store.receipts.size);
      },
    });
    new Counter({
      name: "history_memory_evicted_total",
      help: "Room messages dropped from the in-memory history to stay within its byte budget",
      registers: [registry],
      collect() {
        this.reset();
        this.inc(store.evicted);
      },
    });
  }

  /** The room's log if it has one that has not expired. */
  private find(room: string): RoomLog | undefined {
    const now = this.now();
    this.sweep(now);
    const log = this.rooms.get(room);
    if (log && now - log.touchedAt > this.options.ttlSeconds * 1000) this.drop(log);
    else if (log) return log;
    const stored = this.options.resume?.(room);
    if (!stored) return undefined;
    const resumed: RoomLog = { room, epoch: stored.epoch, offset: stored.offset, messages: [], touchedAt: now };
    this.rooms.set(room, resumed);
    return resumed;
  }

  /** At most once per TTL (and at least once a minute): forgets every room idle past the TTL. */
  private sweep(now: number) {
    if (now < this.nextSweepAt) return;
    const ttlMs = this.options.ttlSeconds * 1000;
    this.nextSweepAt = now + Math.min(ttlMs, 60_000);
    for (const log of this.rooms.values()) if (now - log.touchedAt > ttlMs) this.drop(log);
  }

  /** Forgets a room's history; a later message starts a new epoch. */
  private drop(log: RoomLog) {
    if (this.rooms.get(log.room) !== log) return;
    this.rooms.delete(log.room);
    for (const message of log.messages) this.bytes -= costOf(message);
    this.liveMessages -= log.messages.length;
    log.messages = [];
    if (log.epoch === this.emptyEpoch) this.emptyEpoch = randomUUIDv7();
  }

  async append(draft: MessageDraft): Promise<AppendResult> {
    return this.appendNow(draft);
  }

  appendNow(draft: MessageDraft): AppendResult {
    // Looked up, stored and recorded in one synchronous step: no other append can come in between.
    const key = pairKey(draft.from, draft.clientMsgId);
    const seen = this.receipts.lookupKey(key);
    if (seen) return { status: "duplicate", receipt: seen.answer };
    let log = this.find(draft.room);
    const now = this.now();
    if (!log) {
      log = { room: draft.room, epoch: this.emptyEpoch, offset: 0, messages: [], touchedAt: now };
      this.rooms.set(draft.room, log);
    }
    const message: RoomMessage = {
      room: draft.room,
      id: draft.id,
      offset: ++log.offset,
      from: draft.from,
      text: draft.text,
      ts: draft.ts,
      clientMsgId: draft.clientMsgId,
    };
    log.touchedAt = now;
    if (this.options.historySize > 0) this.keep(log, message);
    const receipt: AppendReceipt = { room: message.room, id: message.id, offset: message.offset, ts: message.ts };
    this.receipts.recordKey(key, receipt);
    return { status: "stored", message, epoch: log.epoch, published: false };
  }

  /**
   * Remembers a message stored before this process started (read back from a database), so that a
   * resend of it within the dedup window is answered as a duplicate, not stored again.
   */
  rememberStored(message: Pick<RoomMessage, "room" | "id" | "offset" | "ts" | "from" | "clientMsgId">) {
    const receipt: AppendReceipt = { room: message.room, id: message.id, offset: message.offset, ts: message.ts };
    this.receipts.record(message.from, message.clientMsgId, receipt);
  }

  private keep(log: RoomLog, message: RoomMessage) {
    const bytes = costOf(message);
    log.messages.push(message);
    this.arrivals.push({ log, offset: message.offset, bytes });
    this.bytes += bytes;
    this.liveMessages++;
    if (log.messages.length > this.options.historySize) {
      this.bytes -= costOf(log.messages.shift()!);
      this.liveMessages--;
    }
    while (this.bytes > this.maxBytes && this.evictOldest()) {}
    this.compact();
  }

  /**
   * Drops the oldest message held in any room. A room left without messages is forgotten: it has
   * nothing to replay, and its next message starts a new epoch (clients see `recovered: false`).
   */
  private evictOldest(): boolean {
    while (this.arrivalsHead < this.arrivals.length) {
      const { log, offset } = this.arrivals[this.arrivalsHead++]!;
      const oldest = log.messages[0];
      if (this.rooms.get(log.room) !== log || oldest?.offset !== offset) continue;
      log.messages.shift();
      this.bytes -= costOf(oldest);
      this.liveMessages--;
      this.evicted++;
      if (log.messages.length === 0) this.drop(log);
      return true;
    }
    return false;
  }

  /**
   * Keeps the arrival queue within twice the messages held (entries trimmed by count or dropped
   * with their room are filtered out) and releases the part already consumed by eviction.
   */
  private compact() {
    const queued = this.arrivals.length - this.arrivalsHead;
    if (queued >= 1024 && queued > 2 * this.liveMessages) {
      this.arrivals = this.arrivals
        .slice(this.arrivalsHead)
        .filter((s) => this.rooms.get(s.log.room) === s.log && (s.log.messages[0]?.offset ?? Infinity) <= s.offset);
      this.arrivalsHead = 0;
    } else if (this.arrivalsHead >= 1024 && this.arrivalsHead >= queued) {
      this.arrivals = this.arrivals.slice(this.arrivalsHead);
      this.arrivalsHead = 0;
    }
  }

  async head(room: string): Promise<RoomHead> {
    const log = this.find(room);
    // Every epoch here starts at offset 0: a forgotten room starts again from 1.
    return log ? { epoch: log.epoch, offset: log.offset, start: 0 } : { epoch: this.emptyEpoch, offset: 0, start: 0 };
  }

  async since(room: string, afterOffset: number, epoch?: string): Promise<Replay> {
    const log = this.find(room);
    const current = log?.epoch ?? this.emptyEpoch;
    const head = log?.offset ?? 0;
    if (epoch !== undefined && epoch !== current) return { epoch: current, messages: [], complete: false };
    if (!log || afterOffset >= head) return { epoch: current, messages: [], complete: afterOffset === head };
    const oldest = log.messages[0]?.offset ?? head + 1;
    const messages = log.messages.filter((m) => m.offset > afterOffset);
    return { epoch: current, messages, complete: oldest <= afterOffset + 1 };
  }

  async before(room: string, before: number | undefined, limit: number) {
    const held = this.find(room)?.messages ?? [];
    const older = before === undefined ? held : held.filter((m) => m.offset < before);
    const messages = older.slice(Math.max(0, older.length - limit));
    return { messages, hasMore: older.length > messages.length };
  }

  async close() {
    this.rooms.clear();
    this.arrivals = [];
    this.arrivalsHead = 0;
    this.bytes = 0;
    this.liveMessages = 0;
    this.receipts.clear();
  }
}

/** Estimated memory of a stored message: its strings as UTF-16 plus a fixed overhead. */
function costOf(m: RoomMessage): number {
  return MESSAGE_OVERHEAD_BYTES + 2 * (m.text.length + m.id.length + m.from.length + m.clientMsgId.length);
}
