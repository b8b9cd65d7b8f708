import { randomUUIDv7 } from "bun";
import type { Connection } from "../../connections/connection";
import type { FrameOf } from "../../protocol/client-frames";
import type { DirectMessage } from "../../protocol/server-frames";
import type { ChatContext } from "../context";

/**
 * A message to one user: kept in the recipient's inbox and in the sender's (their other devices see
 * what was sent), then published to both users' connections on every instance, then acknowledged.
 * Each inbox holds one entry per (sender, recipient, clientMsgId), so a resend after a failure
 * completes what is missing and a resend after success is answered `duplicate: true`.
 */
export async function direct(chat: ChatContext, connection: Connection, frame: FrameOf<"direct">) {
  const { inbox } = chat.deps;
  const { to, text, clientMsgId } = frame;
  const from = connection.userId;
  const draft: DirectMessage = { id: randomUUIDv7(), from, to, text, ts: chat.now(), clientMsgId };
  const received = await inbox.append(to, draft);
  // The sender's copy is the recipient's entry (its id and time), so a resend keeps them.
  const { offset: _, ...kept } = received.entry;
  const sent = to === from ? received : await inbox.append(from, kept);
  const repeat = received.duplicate && sent.duplicate;
  // A send that failed between the two appends published nothing: its resend publishes both (a
  // connection already sent an entry skips it).
  if (!repeat) {
    chat.delivery.publishDirect(to, received.epoch, received.entry);
    if (to !== from) chat.delivery.publishDirect(from, sent.epoch, sent.entry);
  }
  const answer = { to, id: sent.entry.id, ts: sent.entry.ts, offset: sent.entry.offset, epoch: sent.epoch };
  chat.replies.respond(connection, "direct", frame.ref, repeat ? { ...answer, duplicate: true } : answer);
}
