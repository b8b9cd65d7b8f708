// Every Redis key and channel the server uses, built in one place under REDIS_KEY_PREFIX.
// Room keys carry a {hash tag} so a room's log and meta would share a slot; the append script also
// touches several rooms and dedup keys in one call, so the server needs one Redis, not a cluster.

export function redisKeys(prefix: string) {
  return {
    roomMeta: (room: string) => `${prefix}{room:${room}}:meta`,
    roomLog: (room: string) => `${prefix}{room:${room}}:log`,
    /** Held by the instance writing the room's messages behind into the database, for a few seconds. */
    roomPersistLease: (room: string) => `${prefix}{room:${room}}:persist-lease`,
    /** Every room's meta key, for SCAN MATCH. */
    roomMetaPattern: () => `${prefix}{room:*}:meta`,
    /** Rooms with messages not yet written behind; added to after each append. */
    persistDirty: () => `${prefix}persist:dirty`,
    dedup: (userId: string, clientMsgId: string) => `${prefix}dedup:${userId}:${clientMsgId}`,
    session: (connectionId: string) => `${prefix}session:${connectionId}`,
    /** A user's read position per room: a hash under the user's hash tag. */
    readPositions: (userId: string) => `${prefix}{user:${userId}}:reads`,
    presenceConnections: (room: string) => `${prefix}{presence:${room}}:connections`,
    presenceUsers: (room: string) => `${prefix}{presence:${room}}:users`,
    instances: () => `${prefix}instances`,
    instanceAlive: (instanceId: string) => `${prefix}instance:${instanceId}:alive`,
    instanceRooms: (instanceId: string) => `${prefix}instance:${instanceId}:rooms`,
    channel: (topic: string) => `${prefix}bp:${topic}`,
    channelPrefix: () => `${prefix}bp:`,
  };
}

export type RedisKeys = ReturnType<typeof redisKeys>;
