import type { Connection } from "./connection";

/** Open connections of this instance by connectionId, and per user for direct delivery counts. */
export class ConnectionRegistry {
  private readonly byId = new Map<string, Connection>();

  get size() {
    return this.byId.size;
  }

  get(connectionId: string) {
    return this.byId.get(connectionId);
  }

  add(connection: Connection) {
    this.byId.set(connection.id, connection);
  }

  /** Removes the entry only if it still belongs to this connection (a replacement may own the id now). */
  remove(connection: Connection) {
    if (this.byId.get(connection.id) === connection) this.byId.delete(connection.id);
  }

  values() {
    return this.byId.values();
  }
}
