import type { Connection } from "./connection";

/** Open connections of this instance by connectionId, and per user for direct delivery counts. */
export class ConnectionRegistry {
  private readonly byId = new Map<string, Connection>();
  private readonly perUser = new Map<string, number>();

  get size() {
    return this.byId.size;
  }

  get(connectionId: string) {
    return this.byId.get(connectionId);
  }

  add(connection: Connection) {
    this.byId.set(connection.id, connection);
    this.perUser.set(connection.userId, (this.perUser.get(connection.userId) ?? 0) + 1);
  }

  /** Open connections of a user on this instance. */
  countForUser(userId: string) {
    return this.perUser.get(userId) ?? 0;
  }

  /** Removes the entry only if it still belongs to this connection (a replacement may own the id now). */
  remove(connection: Connection) {
    if (this.byId.get(connection.id) !== connection) return;
    this.byId.delete(connection.id);
    const left = (this.perUser.get(connection.userId) ?? 1) - 1;
    if (left > 0) this.perUser.set(connection.userId, left);
    else this.perUser.delete(connection.userId);
  }

  values() {
    return this.byId.values();
  }
}
