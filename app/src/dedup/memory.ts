import type { DedupAnswer, DedupStore } from "./dedup";

interface Entry {
  answer: DedupAnswer | undefined;
  expiresAt: number;
}

const CLAIMED = Object.freeze({ claimed: true as const });

/** Every message passes through here, so it allocates one entry per message and nothing else. */
export class MemoryDedupStore implements DedupStore {
  // A Map iterates in insertion order and every entry lives the same window, so expired entries
  // are always at the front: pruning stops at the first live one.
  private readonly entries = new Map<string, Entry>();
  private nextPruneAt = 0;

  constructor(
    private readonly windowSeconds: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** At most once a second: an entry outliving its window by a second changes nothing. */
  private prune(now: number) {
    if (now < this.nextPruneAt) return;
    this.nextPruneAt = now + 1000;
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt > now) break;
      this.entries.delete(key);
    }
  }

  async claim(userId: string, clientMsgId: string) {
    const now = this.now();
    this.prune(now);
    const key = userId + "\u0000" + clientMsgId;
    const entry = this.entries.get(key);
    if (entry && entry.expiresAt > now) return { claimed: false as const, answer: entry.answer };
    if (entry) this.entries.delete(key);
    this.entries.set(key, { answer: undefined, expiresAt: now + this.windowSeconds * 1000 });
    return CLAIMED;
  }

  async remember(userId: string, clientMsgId: string, answer: DedupAnswer) {
    const entry = this.entries.get(userId + "\u0000" + clientMsgId);
    if (entry) entry.answer = answer;
  }

  async release(userId: string, clientMsgId: string) {
    this.entries.delete(userId + "\u0000" + clientMsgId);
  }

  async close() {
    this.entries.clear();
  }
}
