export type DedupAnswer = Record<string, unknown>;

/**
 * Remembers the answer given to a (user, clientMsgId) pair for the dedup window, so a message sent
 * again (after a reconnect, to any instance sharing the store) gets the original answer instead of
 * being stored and broadcast twice.
 * Guarantee: of concurrent claims of one pair, exactly one gets `{ claimed: true }`; the others get
 * the answer once the winner records it (or `{ claimed: false }` without one if it never does).
 */
export interface DedupStore {
  claim(userId: string, clientMsgId: string): Promise<{ claimed: true } | { claimed: false; answer?: DedupAnswer }>;
  /** Records the answer of a claimed pair. */
  remember(userId: string, clientMsgId: string, answer: DedupAnswer): Promise<void>;
  /** Gives up a claim whose request failed, so a retry can succeed. */
  release(userId: string, clientMsgId: string): Promise<void>;
  close(): Promise<void>;
}
