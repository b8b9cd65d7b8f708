/**
 * Who is in a room, counted per user across every connection (and every instance sharing the store).
 * Guarantees: `add` answers true only for a user's first connection in the room and `remove` true
 * only for the last, so `presence_diff` announces each user once. Members held by an instance that
 * died are removed within the presence TTL and reported through `onExpired`.
 */
export interface PresenceStore {
  add(room: string, userId: string, connectionId: string): Promise<boolean>;
  remove(room: string, userId: string, connectionId: string): Promise<boolean>;
  members(room: string): Promise<string[]>;
  /** Called with the users who left a room because the instance holding them died. */
  onExpired(handler: (room: string, userIds: string[]) => void): void;
  close(): Promise<void>;
}
