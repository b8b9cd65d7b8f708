import type { Session, SessionStore } from "./sessions";

export class MemorySessionStore implements SessionStore {
  private readonly sessions = new Map<string, { session: Session; expiresAt: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  async save(key: string, session: Session, ttlSeconds: number) {
    this.prune();
    // Re-inserted at the end: with one TTL for all, the map stays in expiry order.
    this.sessions.delete(key);
    this.sessions.set(key, { session, expiresAt: this.now() + ttlSeconds * 1000 });
  }

  async take(key: string) {
    const entry = this.sessions.get(key);
    this.sessions.delete(key);
    return entry && entry.expiresAt > this.now() ? entry.session : undefined;
  }

  private prune() {
    const now = this.now();
    // Oldest first: stop at the first live one instead of walking every session on every save.
    for (const [key, entry] of this.sessions) {
      if (entry.expiresAt > now) break;
      this.sessions.delete(key);
    }
  }

  async close() {
    this.sessions.clear();
  }
}
