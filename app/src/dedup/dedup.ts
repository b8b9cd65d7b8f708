/**
 * Remembers the answer given to a (user, clientMsgId) pair for the dedup window, so a message sent
 * again (after a reconnect, to any instance sharing the store) gets the original answer instead of
 * being stored and broadcast twice.
 */
export interface DedupStore {
  /** The answer recorded for this pair within the window, if any. */
  recall(userId: string, clientMsgId: string): Promise<Record<string, unknown> | undefined>;
  remember(userId: string, clientMsgId: string, answer: Record<string, unknown>): Promise<void>;
  close(): Promise<void>;
}
