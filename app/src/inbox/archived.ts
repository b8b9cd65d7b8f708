import type { DirectMessage } from "../protocol/server-frames";
import type { InboxAppend, InboxEntry, InboxReplay, InboxStore } from "./inbox";

/** The reads of a database the inbox entries are written behind into. */
export interface InboxArchive {
  /** Entries of the epoch with `after < offset < before`, oldest first, at most `limit`. */
  after(owner: string, epoch: string, after: number, before: number, limit: number): Promise<InboxEntry[]>;
}

/**
 * The Redis inboxes in front of a database their entries are written behind into (see
 * InboxPersister). Appends go to Redis alone: the acknowledgement follows the Redis append. A
 * resume older than what Redis still keeps (trimmed to INBOX_SIZE, expired after INBOX_TTL, lost)
 * is filled in from the database: nothing falls between the two, since Redis is never trimmed past
 * what the database holds, and is read first (the database only gains entries meanwhile).
 */
export class ArchivedInboxStore implements InboxStore {
  constructor(
    readonly hot: InboxStore,
    readonly archive: InboxArchive,
  ) {}

  append(owner: string, message: DirectMessage): Promise<InboxAppend> {
    return this.hot.append(owner, message);
  }

  async since(owner: string, after: number | undefined, epoch: string | undefined, limit: number) {
    const replay = await this.hot.since(owner, after, epoch, limit);
    if (replay.complete || after === undefined || (epoch !== undefined && epoch !== replay.epoch)) return replay;
    // Same epoch, and Redis starts above `after`: the database holds the entries in between.
    const firstHot = replay.messages[0]?.offset ?? replay.offset + 1;
    const wanted = Math.min(firstHot - after - 1, limit);
    if (wanted <= 0) return replay;
    let older: InboxEntry[];
    try {
      older = await this.archive.after(owner, replay.epoch, after, firstHot, wanted);
    } catch {
      // The database is down: the resume goes on with what Redis keeps (`recovered: false`).
      return replay;
    }
    // A page of at most `limit`: a client further behind asks again from the page's last offset.
    const messages = [...older, ...replay.messages].slice(0, limit);
    const complete = older.length === wanted && older.every((entry, i) => entry.offset === after + 1 + i);
    return { ...replay, messages, complete } satisfies InboxReplay;
  }

  close() {
    return this.hot.close();
  }
}
