/** Where a user has read a room up to: an offset of the room's epoch. */
export interface ReadPosition {
  epoch: string;
  offset: number;
}

/**
 * Each user's read position per room, shared by the user's devices. Guarantees: a position only
 * moves forward within an epoch (a read below the stored offset leaves it where it is); a read in
 * another epoch (the room's history started anew) replaces it; every instance sharing the store
 * sees a position once `advance` resolved.
 */
export interface ReadPositionStore {
  /** Stores `position` unless the stored one of the same epoch is further; resolves with the stored one. */
  advance(userId: string, room: string, position: ReadPosition): Promise<ReadPosition>;
  get(userId: string, room: string): Promise<ReadPosition | undefined>;
  close(): Promise<void>;
}

/** The position that wins between the stored one and a new read. */
export function furthest(stored: ReadPosition | undefined, next: ReadPosition): ReadPosition {
  return stored && stored.epoch === next.epoch && stored.offset >= next.offset ? stored : next;
}
