/** What a connection held, kept after it closes so the same connectionId can resume it. */
export interface Session {
  userId: string;
  /**
   * Rooms joined, with the epoch and the last offset delivered to the connection. Built without a
   * prototype (a room may be named `__proto__`) and read with Object.keys.
   */
  rooms: Record<string, { epoch: string; offset: number }>;
}

/**
 * Sessions by key (see sessionKey). A saved session lives `ttlSeconds` and is taken (read and
 * removed) by the connection that resumes it, on any instance sharing the store.
 */
export interface SessionStore {
  save(key: string, session: Session, ttlSeconds: number): Promise<void>;
  take(key: string): Promise<Session | undefined>;
  close(): Promise<void>;
}

/**
 * A session belongs to the user who opened the connection: it is kept under the user and the
 * connectionId together, so another user naming the same connectionId finds nothing and cannot
 * take (destroy) it. A connectionId has no `:`, so the key is unambiguous.
 */
export function sessionKey(userId: string, connectionId: string): string {
  return `${connectionId}:${userId}`;
}
