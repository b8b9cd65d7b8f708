import { AuthError, type Identity, mayEnter } from "../../auth/auth";
import type { Connection } from "../../connections/connection";
import type { FrameOf } from "../../protocol/client-frames";
import { ErrorCode } from "../../protocol/codes";
import type { ChatContext } from "../context";
import { ChatError } from "../errors";

/** A fresh token before the current one expires; it must name the same user. */
export async function auth(chat: ChatContext, connection: Connection, frame: FrameOf<"auth">) {
  const { authenticator } = chat.deps;
  if (!authenticator) throw new ChatError(ErrorCode.Forbidden, "this server does not use tokens");
  let identity: Identity;
  try {
    identity = await authenticator.verify(frame.token);
  } catch (error) {
    throw new ChatError(ErrorCode.InvalidToken, error instanceof AuthError ? error.message : "the token is not valid");
  }
  if (identity.userId !== connection.userId)
    throw new ChatError(ErrorCode.Forbidden, "the token belongs to another user");
  connection.roles = identity.roles;
  connection.expiresAt = identity.expiresAt;
  // Rooms held under a role the new token no longer has are left, and the answer names them.
  const left: string[] = [];
  for (const room of [...connection.rooms.keys()]) {
    if (mayEnter(room, identity.roles, chat.deps.config.restrictedRoomPrefixes)) continue;
    await chat.memberships.leave(connection, room);
    left.push(room);
  }
  chat.replies.respond(connection, "auth", frame.ref, { expiresAt: identity.expiresAt ?? null, left });
}
