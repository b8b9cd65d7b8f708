import type { Connection } from "./connection";

const NONE: readonly Connection[] = [];

/** Open connections of this instance by connectionId, and per user for direct delivery and limits. */
export class ConnectionRegistry {
  private readonly byId = new Map<string, Connection>();
  /** Each user's open connections on this instance: direct messages are sent along it. */
  private readonly perUser = new Map<string, Connection[]>();

  get size() {
    return this.byId.size;
  }

  get(connectionId: string) {
    return this.byId.get(connectionId);
  }

  add(connection: Connection) {
    this.byId.set(connection.id, connection);
    const list = this.perUser.get(connection.userId);
    if (list) list.push(connection);
    else this.perUser.set(connection.userId, [connection]);
  }

  /** Open connections of a user on this instance. */
  countForUser(userId: string) {
    return this.perUser.get(userId)?.length ?? 0;
  }

  forUser(userId: string): readonly Connection[] {
    return this.perUser.get(userId) ?? NONE;
  }

  /** Removes the entry only if it still belongs to this connection (a replacement may own the id now). */
  remove(connection: Connection) {
    if (this.byId.get(connection.id) !== connection) return;
    this.byId.delete(connection.id);
    const list = this.perUser.get(connection.userId);
    if (!list) return;
    const i = list.indexOf(connection);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.perUser.delete(connection.userId);
  }

  values() {
    return this.byId.values();
  }
}
