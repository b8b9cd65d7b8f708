import type { DedupStore } from "./dedup";

interface Entry {
  answer: Record<string, unknown>;
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

  async recall(userId: string, clientMsgId: string) {
    const now = this.now();
    this.prune(now);
    return this.entries.get(`${userId}\u0000${clientMsgId}`)?.answer;
  }

  async remember(userId: string, clientMsgId: string, answer: Record<string, unknown>) {
    const key = `${userId}\u0000${clientMsgId}`;
    this.entries.delete(key);
    this.entries.set(key, { answer, expiresAt: this.now() + this.windowSeconds * 1000 });
  }

  async close() {
    this.entries.clear();
  }
}
