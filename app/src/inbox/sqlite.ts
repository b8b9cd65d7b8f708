import type { Statement } from "bun:sqlite";
import type { DirectMessage } from "../protocol/server-frames";
import { StoreUnavailable } from "../redis/unavailable";
import type { SqliteMessageStore } from "../store/sqlite";
import { type InboxAppend, type InboxEntry, type InboxStore, replay, replayFrom } from "./inbox";

type Row = { offset: number; id: string; sender: string; recipient: string; text: string; ts: number; cmid: string };

/**
 * Inboxes in the SQLite message database: appended in the same batches and transactions as room
 * messages (through the writer thread, which assigns the offsets), read here on the store's
 * connection. One epoch for every inbox of the file (see migration 3). Entries are kept up to
 * INBOX_SIZE per inbox and deleted with room messages by MESSAGE_RETENTION_DAYS.
 */
export class SqliteInboxStore implements InboxStore {
  private readonly epoch: string;
  private readonly selectHead: Statement<{ head: number }>;
  private readonly selectAfter: Statement<Row>;

  constructor(
    private readonly store: SqliteMessageStore,
    private readonly size: number,
  ) {
    const row = store.db.query("SELECT value FROM settings WHERE key = 'inbox_epoch'").get() as { value: string };
    this.epoch = row.value;
    this.selectHead = store.db.prepare("SELECT head FROM inboxes WHERE user_id = $owner");
    this.selectAfter = store.db.prepare(
      `SELECT "offset" AS offset, id, sender, recipient, text, ts, client_msg_id AS cmid FROM inbox
       WHERE user_id = $owner AND "offset" > $after ORDER BY "offset" LIMIT $limit`,
    );
  }

  async append(owner: string, message: DirectMessage): Promise<InboxAppend> {
    let result: [number, string, number, 0 | 1];
    try {
      result = await this.store.writeDirect(owner, message);
    } catch {
      // Nothing was committed (the transaction rolled back): the client resends with the same clientMsgId.
      throw new StoreUnavailable("inbox");
    }
    const [offset, id, ts, duplicate] = result;
    return { epoch: this.epoch, entry: { ...message, id, ts, offset }, duplicate: duplicate === 1 };
  }

  async since(owner: string, after: number | undefined, epoch: string | undefined, limit: number) {
    const head = this.selectHead.get({ owner })?.head ?? 0;
    const from = replayFrom(this.epoch, after, epoch);
    const messages =
      from === undefined
        ? []
        : this.selectAfter.all({ owner, after: from, limit: Math.min(limit, this.size) }).map(
            (r): InboxEntry => ({
              offset: r.offset,
              id: r.id,
              from: r.sender,
              to: r.recipient,
              text: r.text,
              ts: r.ts,
              clientMsgId: r.cmid,
            }),
          );
    return replay(this.epoch, head, from, messages, epoch);
  }

  /** The message store closes the file. */
  async close() {}
}
