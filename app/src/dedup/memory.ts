import type { DedupAnswer, DedupStore } from "./dedup";

interface Entry {
  answer: DedupAnswer | undefined;
  expiresAt: number;
}

export class MemoryDedupStore implements DedupStore {
  // A Map iterates in insertion order and every entry lives the same window, so expired entries
  // are always at the front: pruning stops at the first live one.
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly windowSeconds: number,
    private readonly now: () => number = Date.now,
  ) {}

  private prune(now: number) {
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt > now) break;
      this.entries.delete(key);
    }
  }

  async claim(userId: string, clientMsgId: string) {
    const now = this.now();
    this.prune(now);
    const key = `${userId}\u0000${clientMsgId}`;
    const entry = this.entries.get(key);
    if (entry) return { claimed: false as const, answer: entry.answer };
    this.entries.set(key, { answer: undefined, expiresAt: now + this.windowSeconds * 1000 });
    return { claimed: true as const };
  }

  async remember(userId: string, clientMsgId: string, answer: DedupAnswer) {
    const entry = this.entries.get(`${userId}\u0000${clientMsgId}`);
    if (entry) entry.answer = answer;
  }

  async release(userId: string, clientMsgId: string) {
    this.entries.delete(`${userId}\u0000${clientMsgId}`);
  }

  async close() {
    this.entries.clear();
  }
}
