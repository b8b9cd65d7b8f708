import { type Identity, mayEnter } from "../auth/auth";
import { Connection, type RoomMembership, type Socket } from "../connections/connection";
import { CloseCode } from "../protocol/codes";
import { frames } from "../protocol/server-frames";
import { roomTopic, userTopic } from "../rooms/topics";
import { type Session, sessionKey } from "../sessions/sessions";
import type { ChatContext } from "./context";

/**
 * Registers a newly opened socket. A live connection of the same user with the same id is replaced
 * (closed with 4001) and its rooms carry over; otherwise a saved session of the same user is
 * resumed. A connectionId open for another user is refused (4409) and the open connection kept:
 * admission checks it first, this catches an upgrade that raced past that check.
 */
export function openConnection(
  chat: ChatContext,
  socket: Socket,
  connectionId: string,
  identity: Identity,
  batched: boolean,
): Connection | undefined {
  const { config, registry, metrics, rooms, backplane } = chat.deps;
  const { userId } = identity;
  const previous = registry.get(connectionId);
  if (previous && previous.userId !== userId) {
    socket.close(CloseCode.ConnectionIdInUse, "connectionId in use by another user");
    return undefined;
  }
  const connection = new Connection(connectionId, userId, socket, chat.now(), config.heartbeatIntervalMs);
  connection.roles = identity.roles;
  connection.expiresAt = identity.expiresAt;
  if (batched) connection.batcher = chat.deps.local;
  let handedOver: Map<string, RoomMembership> | undefined;
  if (previous) {
    // Same user, same connectionId: the rooms move over without a presence change.
    handedOver = new Map(previous.rooms);
    previous.replaced = true;
    registry.remove(previous);
    for (const room of handedOver.keys()) rooms.remove(previous, roomTopic(room));
    if (backplane.distributed) rooms.release(userTopic(userId));
    previous.close(CloseCode.Replaced, "replaced by a newer connection");
  }
  registry.add(connection);
  metrics.connections.set(registry.size);
  connection.ready = establish(chat, connection, handedOver).finally(() => {
    connection.ready = undefined;
  });
  return connection;
}

/** Rejoins handed-over or resumed rooms, then sends `connection_established`. */
async function establish(
  chat: ChatContext,
  connection: Connection,
  handedOver: Map<string, RoomMembership> | undefined,
) {
  const { config, logger } = chat.deps;
  const { id: connectionId, userId } = connection;
  let resumed = false;
  // The new token decides: a room its roles no longer open is not restored (the rooms listed in
  // `connection_established` are the ones held).
  const allowed = (room: string) => mayEnter(room, connection.roles, config.restrictedRoomPrefixes);
  try {
    if (handedOver) {
      resumed = true;
      for (const [room, membership] of handedOver) {
        if (!allowed(room)) {
          await chat.memberships.leavePresence(connection, room);
          continue;
        }
        connection.rooms.set(room, membership);
        await chat.deps.rooms.add(connection, roomTopic(room));
      }
    } else {
      const session = await chat.deps.sessions.take(sessionKey(userId, connectionId));
      if (session && session.userId === userId) {
        resumed = true;
        for (const room of Object.keys(session.rooms)) {
          if (allowed(room)) await chat.memberships.enter(connection, room);
        }
      }
    }
  } catch (error) {
    logger.warn("session resume failed", { connectionId, userId, error: (error as Error).message });
  }
  if (connection.closing) return;
  // Only other instances need to know this user is here: a single instance skips the entry.
  if (chat.deps.backplane.distributed) await chat.deps.rooms.acquire(userTopic(userId));
  connection.send(
    frames.connectionEstablished({
      connectionId,
      userId,
      instanceId: config.instanceId,
      color: config.color,
      version: config.version,
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      frameRate: config.frameRate,
      frameBurst: config.frameBurst,
      resumed,
      rooms: [...connection.rooms.keys()],
      batch: connection.batcher?.limits,
    }),
  );
  logger.debug("connection opened", { connectionId, userId, resumed });
}

/** Releases what the connection held and saves its session for SESSION_TTL. */
export async function closeConnection(chat: ChatContext, connection: Connection, code: number): Promise<void> {
  const { registry, metrics, logger, config } = chat.deps;
  connection.closing = true;
  if (connection.ready) await connection.ready;
  metrics.disconnects.labels(String(code)).inc();
  metrics.connectionDuration.observe((chat.now() - connection.openedAt) / 1000);
  registry.remove(connection);
  metrics.connections.set(registry.size);
  if (connection.replaced) return;

  const memberships = connection.rooms;
  // No prototype: a room named `__proto__` is a key like any other.
  const sessionRooms: Session["rooms"] = Object.create(null);
  for (const [room, membership] of memberships) {
    sessionRooms[room] = {
      epoch: membership.epoch,
      offset: chat.sequencer.last(room, membership.epoch) ?? membership.liveFrom,
    };
  }
  if (chat.deps.backplane.distributed) chat.deps.rooms.release(userTopic(connection.userId));
  try {
    for (const room of memberships.keys()) await chat.memberships.leave(connection, room);
    await chat.deps.sessions.save(
      sessionKey(connection.userId, connection.id),
      { userId: connection.userId, rooms: sessionRooms },
      config.sessionTtlSeconds,
    );
  } catch (error) {
    logger.warn("releasing a closed connection failed", {
      connectionId: connection.id,
      userId: connection.userId,
      error: (error as Error).message,
    });
  }
  logger.debug("connection closed", { connectionId: connection.id, userId: connection.userId, code });
}
