import type { Connection } from "../../connections/connection";
import type { FrameOf } from "../../protocol/client-frames";
import { frames } from "../../protocol/server-frames";
import type { ChatContext } from "../context";
import { notInRoom } from "../replies";

// Typing and read receipts: ephemeral, not stored, sent to every member but the sender.

export function typing(chat: ChatContext, connection: Connection, frame: FrameOf<"typing">) {
  relay(chat, connection, frame, frames.typing(frame.room, connection.userId, frame.active), {});
}

export function read(chat: ChatContext, connection: Connection, frame: FrameOf<"read">) {
  relay(chat, connection, frame, frames.read(frame.room, connection.userId, frame.offset), { offset: frame.offset });
}

/** Sends a member's signal to the rest of the room and answers the sender with `answer`. */
function relay(
  chat: ChatContext,
  connection: Connection,
  frame: FrameOf<"typing" | "read">,
  out: string,
  answer: Record<string, unknown>,
) {
  if (!connection.rooms.has(frame.room)) throw notInRoom(frame.room);
  chat.delivery.publishFromSender(connection, frame.room, out, frame.type);
  chat.replies.respond(connection, frame.type, frame.ref, { room: frame.room, ...answer });
}
