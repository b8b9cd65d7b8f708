import type { Session, SessionStore } from "./sessions";

export class MemorySessionStore implements SessionStore {
  private readonly sessions = new Map<string, { session: Session; expiresAt: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  async save(connectionId: string, session: Session, ttlSeconds: number) {
    this.prune();
    this.sessions.set(connectionId, { session, expiresAt: this.now() + ttlSeconds * 1000 });
  }

  async take(connectionId: string) {
    const entry = this.sessions.get(connectionId);
    this.sessions.delete(connectionId);
    return entry && entry.expiresAt > this.now() ? entry.session : undefined;
  }

  private prune() {
    const now = this.now();
    for (const [id, entry] of this.sessions) if (entry.expiresAt <= now) this.sessions.delete(id);
  }

  async close() {
    this.sessions.clear();
  }
}
