import type { Connection } from "../../connections/connection";
import { InboxCursor } from "../../inbox/cursor";
import type { FrameOf } from "../../protocol/client-frames";
import { frames } from "../../protocol/server-frames";
import type { ChatContext } from "../context";

/**
 * Most entries, and about the most bytes, one `inbox` answer replays: a client further behind gets
 * `more: true` and asks again from `through`, so a full inbox of long texts never exceeds the
 * socket's backpressure limit (which would close the connection before the answer, again on every
 * reconnect).
 */
export const MAX_INBOX_REPLAY = 200;
export const MAX_INBOX_REPLAY_BYTES = 256 * 1024;

/**
 * Resumes the user's inbox: with `lastOffset`, the direct messages kept after it (all kept ones
 * when `epoch` is not the inbox's), each sent once to this connection however it also arrives
 * live; then the answer with the inbox's epoch and newest offset.
 */
export async function inbox(chat: ChatContext, connection: Connection, frame: FrameOf<"inbox">) {
  const { lastOffset, epoch } = frame;
  const replay = await chat.deps.inbox.since(connection.userId, lastOffset, epoch, MAX_INBOX_REPLAY);
  const cursor = (connection.inbox ??= new InboxCursor());
  const sameEpoch = epoch === undefined || epoch === replay.epoch;
  let through = lastOffset === undefined ? undefined : sameEpoch ? lastOffset : 0;
  cursor.resume(replay.epoch, through ?? 0);
  let bytes = 0;
  let replayed = 0;
  for (const entry of replay.messages) {
    if (bytes >= MAX_INBOX_REPLAY_BYTES) break;
    through = entry.offset;
    replayed++;
    if (!cursor.admit(replay.epoch, entry.offset)) continue;
    const direct = frames.direct(entry, replay.epoch);
    bytes += direct.length;
    connection.send(direct);
  }
  const more =
    replayed < replay.messages.length ||
    (replay.messages.length === MAX_INBOX_REPLAY && through !== undefined && through < replay.offset);
  const recovered = lastOffset !== undefined && replay.complete;
  chat.deps.metrics.inboxResumes.labels(String(recovered)).inc();
  chat.replies.respond(connection, "inbox", frame.ref, {
    epoch: replay.epoch,
    offset: replay.offset,
    recovered,
    replayed,
    ...(more ? { more: true, through } : {}),
  });
}
