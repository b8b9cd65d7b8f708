import type { Connection } from "../../connections/connection";
import { InboxCursor } from "../../inbox/cursor";
import type { FrameOf } from "../../protocol/client-frames";
import { frames } from "../../protocol/server-frames";
import type { ChatContext } from "../context";

/**
 * Resumes the user's inbox: with `lastOffset`, the direct messages kept after it (all kept ones
 * when `epoch` is not the inbox's), each sent once to this connection however it also arrives
 * live; then the answer with the inbox's epoch and newest offset.
 */
export async function inbox(chat: ChatContext, connection: Connection, frame: FrameOf<"inbox">) {
  const { lastOffset, epoch } = frame;
  const replay = await chat.deps.inbox.since(connection.userId, lastOffset, epoch);
  const cursor = (connection.inbox ??= new InboxCursor());
  const sameEpoch = epoch === undefined || epoch === replay.epoch;
  cursor.resume(replay.epoch, lastOffset !== undefined && sameEpoch ? lastOffset : 0);
  for (const entry of replay.messages) {
    if (cursor.admit(replay.epoch, entry.offset)) connection.socket.send(frames.direct(entry, replay.epoch));
  }
  chat.deps.metrics.inboxResumes.labels(String(lastOffset !== undefined && replay.complete)).inc();
  chat.replies.respond(connection, "inbox", frame.ref, {
    epoch: replay.epoch,
    offset: replay.offset,
    recovered: lastOffset !== undefined && replay.complete,
    replayed: replay.messages.length,
  });
}
