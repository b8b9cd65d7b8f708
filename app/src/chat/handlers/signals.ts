import type { Connection } from "../../connections/connection";
import type { FrameOf } from "../../protocol/client-frames";
import { frames } from "../../protocol/server-frames";
import type { ChatContext } from "../context";
import { notInRoom } from "../replies";

// Typing and read receipts: ephemeral, not stored, sent to every member but the sender.

export function typing(chat: ChatContext, connection: Connection, frame: FrameOf<"typing">) {
  if (!connection.rooms.has(frame.room)) throw notInRoom(frame.room);
  chat.delivery.publishFromSender(
    connection,
    frame.room,
    frames.typing(frame.room, connection.userId, frame.active),
    "typing",
  );
  chat.replies.respond(connection, "typing", frame.ref, { room: frame.room });
}

export function read(chat: ChatContext, connection: Connection, frame: FrameOf<"read">) {
  if (!connection.rooms.has(frame.room)) throw notInRoom(frame.room);
  chat.delivery.publishFromSender(
    connection,
    frame.room,
    frames.read(frame.room, connection.userId, frame.offset),
    "read",
  );
  chat.replies.respond(connection, "read", frame.ref, { room: frame.room, offset: frame.offset });
}
