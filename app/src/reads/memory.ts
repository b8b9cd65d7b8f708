import { furthest, type ReadPosition, type ReadPositionStore } from "./reads";

/** Positions kept in memory; past this the least recently moved one is forgotten. */
const MAX_POSITIONS = 1_000_000;

/** Read positions in this process only (a restart forgets them). */
export class MemoryReadPositionStore implements ReadPositionStore {
  /** By user and room, least recently moved first. */
  private readonly positions = new Map<string, ReadPosition>();

  constructor(private readonly maxPositions = MAX_POSITIONS) {}

  async advance(userId: string, room: string, position: ReadPosition) {
    const key = `${userId}\u0000${room}`;
    const stored = furthest(this.positions.get(key), position);
    this.positions.delete(key);
    this.positions.set(key, stored);
    if (this.positions.size > this.maxPositions) this.positions.delete(this.positions.keys().next().value!);
    return stored;
  }

  async get(userId: string, room: string) {
    return this.positions.get(`${userId}\u0000${room}`);
  }

  async close() {
    this.positions.clear();
  }
}
