import { randomUUIDv7 } from "bun";
import type { Connection } from "../../connections/connection";
import type { FrameOf } from "../../protocol/client-frames";
import { frames } from "../../protocol/server-frames";
import { roomTopic } from "../../rooms/topics";
import type { ChatContext } from "../context";
import { notInRoom, stillProcessing } from "../replies";

/** Stores a room message (exactly once per sender and clientMsgId) and acknowledges it with its offset. */
export async function message(chat: ChatContext, connection: Connection, frame: FrameOf<"message">) {
  const { history, backplane } = chat.deps;
  const { room, text, clientMsgId } = frame;
  if (!connection.rooms.has(room)) throw notInRoom(room);
  // The store deduplicates (sender, clientMsgId) in the same step as it stores.
  const result = await history.append({
    room,
    id: randomUUIDv7(),
    from: connection.userId,
    text,
    ts: chat.now(),
    clientMsgId,
  });
  if (result.status === "pending") throw stillProcessing();
  if (result.status === "duplicate") {
    chat.replies.respond(connection, "message", frame.ref, { ...result.receipt, duplicate: true });
    return;
  }
  const { message, epoch, published } = result;
  // Published by the store (Redis): it comes back through the backplane to this instance too,
  // in offset order with everyone else's. Only while the backplane is down, deliver here.
  if (!published || backplane.status(roomTopic(room)) !== "up") {
    const payload = frames.message(message);
    chat.sequencer.offer(room, epoch, message.offset, payload);
    if (!published) backplane.publish({ topic: roomTopic(room), frame: payload, epoch, offset: message.offset });
  }
  chat.replies.respond(connection, "message", frame.ref, {
    room,
    id: message.id,
    offset: message.offset,
    ts: message.ts,
  });
}
