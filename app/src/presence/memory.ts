import type { PresenceStore } from "./presence";

export class MemoryPresenceStore implements PresenceStore {
  /** room -> user -> that user's connections in the room */
  private readonly rooms = new Map<string, Map<string, Set<string>>>();

  async add(room: string, userId: string, connectionId: string) {
    let users = this.rooms.get(room);
    if (!users) this.rooms.set(room, (users = new Map()));
    let connections = users.get(userId);
    if (!connections) users.set(userId, (connections = new Set()));
    const first = connections.size === 0;
    connections.add(connectionId);
    return first;
  }

  async remove(room: string, userId: string, connectionId: string) {
    const users = this.rooms.get(room);
    const connections = users?.get(userId);
    if (!users || !connections?.delete(connectionId)) return false;
    if (connections.size > 0) return false;
    users.delete(userId);
    if (users.size === 0) this.rooms.delete(room);
    return true;
  }

  async members(room: string) {
    return [...(this.rooms.get(room)?.keys() ?? [])].sort();
  }

  /** A single process cannot outlive itself: nothing ever expires here. */
  onExpired() {}

  async close() {
    this.rooms.clear();
  }
}
