import type { Connection } from "../../connections/connection";
import type { FrameOf } from "../../protocol/client-frames";
import { frames } from "../../protocol/server-frames";
import type { ChatContext } from "../context";
import { notInRoom } from "../replies";

// Typing (ephemeral) and read receipts (the user's read position is stored), sent to every member
// but the sending socket: the user's other devices in the room learn the new position too.

export function typing(chat: ChatContext, connection: Connection, frame: FrameOf<"typing">) {
  relay(chat, connection, frame, frames.typing(frame.room, connection.userId, frame.active), {});
}

export async function read(chat: ChatContext, connection: Connection, frame: FrameOf<"read">) {
  const { room, offset } = frame;
  if (!connection.rooms.has(room)) throw notInRoom(room);
  // Stored in the room's current epoch as this instance delivers it, never past the newest offset
  // delivered here, never moving back. No history call: reads go on while the history is unreachable.
  const seq = chat.sequencer.state(room);
  const stored = await chat.deps.reads.advance(connection.userId, room, {
    epoch: seq?.epoch ?? connection.rooms.get(room)!.epoch,
    offset: Math.min(offset, seq?.last ?? offset),
  });
  relay(chat, connection, frame, frames.read(room, connection.userId, offset), { offset, readOffset: stored.offset });
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
