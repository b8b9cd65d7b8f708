/** What a connection held, kept after it closes so the same connectionId can resume it. */
export interface Session {
  userId: string;
  /** Rooms joined, with the epoch and the last offset delivered to the connection. */
  rooms: Record<string, { epoch: string; offset: number }>;
}

/**
 * Sessions by connectionId. A saved session lives `ttlSeconds` and is taken (read and removed)
 * by the connection that resumes it, on any instance sharing the store.
 */
export interface SessionStore {
  save(connectionId: string, session: Session, ttlSeconds: number): Promise<void>;
  take(connectionId: string): Promise<Session | undefined>;
  close(): Promise<void>;
}
