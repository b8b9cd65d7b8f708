import type { Connection } from "../../connections/connection";
import type { FrameOf } from "../../protocol/client-frames";
import { frames } from "../../protocol/server-frames";
import type { ChatContext } from "../context";
import { notInRoom } from "../replies";

// Requests that read and change nothing: a room's older messages, its members, a ping.

export async function history(chat: ChatContext, connection: Connection, frame: FrameOf<"history">) {
  if (!connection.rooms.has(frame.room)) throw notInRoom(frame.room);
  const { messages, hasMore } = await chat.deps.history.before(frame.room, frame.before, frame.limit ?? 50);
  connection.send(frames.history(frame.room, messages, hasMore, frame.ref));
  chat.deps.metrics.countOut("history");
}

export async function presence(chat: ChatContext, connection: Connection, frame: FrameOf<"presence">) {
  if (!connection.rooms.has(frame.room)) throw notInRoom(frame.room);
  const members = await chat.deps.presence.members(frame.room);
  connection.send(frames.presence(frame.room, members, frame.ref));
  chat.deps.metrics.countOut("presence");
}

export function ping(chat: ChatContext, connection: Connection, frame: FrameOf<"ping">) {
  connection.send(frames.pong(chat.now(), frame.ref));
  chat.deps.metrics.countOut("pong");
}
