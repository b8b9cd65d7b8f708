import { mayEnter } from "../../auth/auth";
import type { Connection } from "../../connections/connection";
import type { FrameOf } from "../../protocol/client-frames";
import { ErrorCode } from "../../protocol/codes";
import { frames } from "../../protocol/server-frames";
import type { ChatContext } from "../context";
import { ChatError } from "../errors";
import { notInRoom } from "../replies";

/** Joins a room (if not a member yet) and, with `lastOffset`, replays what the client missed. */
export async function join(chat: ChatContext, connection: Connection, frame: FrameOf<"join">) {
  const { config, history, metrics, reads } = chat.deps;
  const { room } = frame;
  if (!mayEnter(room, connection.roles, config.restrictedRoomPrefixes)) {
    throw new ChatError(ErrorCode.Forbidden, `room ${room} needs the ${room.slice(0, room.indexOf(":"))} role`);
  }
  const memberships = connection.rooms;
  let membership = memberships.get(room);
  if (!membership) {
    if (memberships.size >= config.maxRoomsPerConnection) {
      throw new ChatError(
        ErrorCode.TooManyRooms,
        `a connection may join at most ${config.maxRoomsPerConnection} rooms`,
      );
    }
    membership = await chat.memberships.enter(connection, room);
  }
  let recovered = false;
  if (frame.lastOffset !== undefined) {
    const replay = await history.since(room, frame.lastOffset, frame.epoch);
    recovered = replay.complete && replay.epoch === membership.epoch;
    if (recovered) {
      // Messages above liveFrom were (or will be) delivered by publish: replaying them would duplicate.
      for (const message of replay.messages) {
        if (message.offset > membership.liveFrom) break;
        connection.send(frames.message(message));
      }
    }
    metrics.resumes.labels(String(recovered)).inc();
  }
  const [head, read] = await Promise.all([history.head(room), reads.get(connection.userId, room)]);
  // A position of an older epoch counts for nothing: that history is gone.
  const readOffset = read && read.epoch === head.epoch ? Math.min(read.offset, head.offset) : 0;
  chat.replies.respond(connection, "join", frame.ref, {
    room,
    epoch: head.epoch,
    offset: head.offset,
    recovered,
    readOffset,
    unread: head.offset - readOffset,
  });
}

export async function leave(chat: ChatContext, connection: Connection, frame: FrameOf<"leave">) {
  if (!connection.rooms.has(frame.room)) throw notInRoom(frame.room);
  await chat.memberships.leave(connection, frame.room);
  chat.replies.respond(connection, "leave", frame.ref, { room: frame.room });
}
