import { randomUUIDv7 } from "bun";
import type { DirectMessage } from "../protocol/server-frames";
import { type InboxAppend, type InboxEntry, type InboxStore, replay, replayFrom } from "./inbox";

/** Inboxes kept in memory; past this the one written least recently is forgotten. */
const MAX_INBOXES = 100_000;

interface Inbox {
  epoch: string;
  head: number;
  /** The newest entries, oldest first, at most `size`. */
  entries: InboxEntry[];
  /** (from, to, clientMsgId) of the kept entries. */
  byClientMsgId: Map<string, InboxEntry>;
  writtenAt: number;
}

/**
 * Inboxes in this process only (a restart forgets them: clients then see a new epoch). Bounded by
 * `size` entries per inbox, MAX_INBOXES inboxes, and `ttlSeconds` without a write.
 */
export class MemoryInboxStore implements InboxStore {
  /** By owner, least recently written first. */
  private readonly inboxes = new Map<string, Inbox>();

  constructor(
    private readonly options: { size: number; ttlSeconds: number; maxInboxes?: number },
    private readonly now: () => number = Date.now,
  ) {}

  private inbox(owner: string): Inbox {
    const now = this.now();
    let inbox = this.inboxes.get(owner);
    if (inbox && now - inbox.writtenAt > this.options.ttlSeconds * 1000) inbox = undefined;
    if (!inbox) {
      inbox = { epoch: randomUUIDv7(), head: 0, entries: [], byClientMsgId: new Map(), writtenAt: now };
      this.inboxes.set(owner, inbox);
      if (this.inboxes.size > (this.options.maxInboxes ?? MAX_INBOXES)) {
        this.inboxes.delete(this.inboxes.keys().next().value!);
      }
    }
    return inbox;
  }

  async append(owner: string, message: DirectMessage): Promise<InboxAppend> {
    const inbox = this.inbox(owner);
    const key = dedupKey(message);
    const kept = inbox.byClientMsgId.get(key);
    if (kept) return { epoch: inbox.epoch, entry: kept, duplicate: true };
    const entry: InboxEntry = { ...message, offset: ++inbox.head };
    inbox.entries.push(entry);
    inbox.byClientMsgId.set(key, entry);
    if (inbox.entries.length > this.options.size) {
      const dropped = inbox.entries.shift()!;
      inbox.byClientMsgId.delete(dedupKey(dropped));
    }
    inbox.writtenAt = this.now();
    // Most recently written last, so the first one is the one to forget.
    this.inboxes.delete(owner);
    this.inboxes.set(owner, inbox);
    return { epoch: inbox.epoch, entry, duplicate: false };
  }

  async since(owner: string, after: number | undefined, epoch: string | undefined, limit: number) {
    const inbox = this.inbox(owner);
    const from = replayFrom(inbox.epoch, after, epoch);
    const messages = from === undefined ? [] : inbox.entries.filter((entry) => entry.offset > from).slice(0, limit);
    return replay(inbox.epoch, inbox.head, from, messages, epoch);
  }

  async close() {
    this.inboxes.clear();
  }
}

/** A resend is the same sender, recipient and clientMsgId. */
function dedupKey(m: DirectMessage) {
  return `${m.from}\u0000${m.to}\u0000${m.clientMsgId}`;
}
