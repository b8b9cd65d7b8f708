import { randomUUIDv7 } from "bun";
import type { Connection } from "../../connections/connection";
import type { AppendResult } from "../../history/history";
import type { FrameOf } from "../../protocol/client-frames";
import { frames } from "../../protocol/server-frames";
import { roomTopic } from "../../rooms/topics";
import type { ChatContext } from "../context";
import { notInRoom, stillProcessing } from "../replies";

/**
 * Stores a room message (exactly once per sender and clientMsgId) and acknowledges it with its offset.
 * A store that stores synchronously (in memory) is answered in the same turn, without a promise.
 */
export function message(
  chat: ChatContext,
  connection: Connection,
  frame: FrameOf<"message">,
): Promise<void> | undefined {
  const { history } = chat.deps;
  const { room, text, clientMsgId } = frame;
  if (!connection.rooms.has(room)) throw notInRoom(room);
  const draft = { room, id: randomUUIDv7(), from: connection.userId, text, ts: chat.now(), clientMsgId };
  // The store deduplicates (sender, clientMsgId) in the same step as it stores.
  if (history.appendNow) {
    stored(chat, connection, frame, history.appendNow(draft));
    return undefined;
  }
  return history.append(draft).then((result) => stored(chat, connection, frame, result));
}

function stored(chat: ChatContext, connection: Connection, frame: FrameOf<"message">, result: AppendResult) {
  const { backplane } = chat.deps;
  const room = frame.room;
  if (result.status === "pending") throw stillProcessing();
  if (result.status === "duplicate") {
    chat.replies.respond(connection, "message", frame.ref, { ...result.receipt, duplicate: true });
    return;
  }
  const { message, epoch, published } = result;
  // Published by the store (Redis): it comes back through the backplane to this instance too,
  // in offset order with everyone else's. Only while the backplane is down, deliver here.
  if (!published || backplane.status(roomTopic(room)) !== "up") {
    const payload = result.frame ?? frames.message(message);
    chat.sequencer.offer(room, epoch, message.offset, payload);
    if (!published) backplane.publish({ topic: roomTopic(room), frame: payload, epoch, offset: message.offset });
  }
  chat.replies.respondWith(connection, frames.messageStored(frame.ref, room, message.id, message.offset, message.ts));
}
