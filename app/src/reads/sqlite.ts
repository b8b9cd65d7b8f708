import type { Statement } from "bun:sqlite";
import type { SqliteMessageStore } from "../store/sqlite";
import type { ReadPosition, ReadPositionStore } from "./reads";

/**
 * Read positions in the SQLite message database: written in the same batches and transactions as
 * messages (through the writer thread), read here on the store's connection.
 */
export class SqliteReadPositionStore implements ReadPositionStore {
  private readonly select: Statement<ReadPosition>;

  constructor(private readonly store: SqliteMessageStore) {
    this.select = store.db.prepare(
      `SELECT epoch, "offset" AS offset FROM read_positions WHERE user_id = $userId AND room = $room`,
    );
  }

  async advance(userId: string, room: string, position: ReadPosition) {
    await this.store.writeRead(userId, room, position);
    return (await this.get(userId, room)) ?? position;
  }

  async get(userId: string, room: string) {
    return this.select.get({ userId, room }) ?? undefined;
  }

  /** The message store closes the file. */
  async close() {}
}
