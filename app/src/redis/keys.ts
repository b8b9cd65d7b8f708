// Every Redis key and channel the server uses, built in one place under REDIS_KEY_PREFIX.
//
// Two layouts. "single" (one Redis) keeps the names every earlier release used, so a release running
// beside this one in a blue-green deploy reads and writes the same keys. "cluster" (Redis Cluster)
// puts every key a script or transaction touches together under one {hash tag}, so it lives in one
// slot: a room's meta, log, presence, message dedup and backplane channel under {room:<name>}; a
// user's sessions, direct-message dedup and channel under {user:<id>}; the instance registry under
// {instances}. The prefix holds no braces (config refuses them), so the tag is always the one here.

export type KeyLayout = "single" | "cluster";

/** Names remembered by each memoized key builder; emptied when full. */
const MEMO_NAMES = 50_000;

/**
 * The same string for the same name. A room's meta, log and channel are named several times per
 * message (the append's arguments, the slot of its shard on a cluster, the shard's status on the way
 * in and out): built once, each is then one lookup, and a map keyed by it (the slot memo) finds it
 * without hashing a new string again.
 */
function memo(build: (name: string) => string): (name: string) => string {
  const built = new Map<string, string>();
  return (name) => {
    let key = built.get(name);
    if (key === undefined) {
      key = build(name);
      if (built.size >= MEMO_NAMES) built.clear();
      built.set(name, key);
    }
    return key;
  };
}

export function redisKeys(prefix: string, layout: KeyLayout = "single") {
  const room = (name: string) => `${prefix}{room:${name}}`;
  const shared = {
    layout,
    roomMeta: memo((name) => `${room(name)}:meta`),
    roomLog: memo((name) => `${room(name)}:log`),
    /** Held by the instance writing the room's messages behind into the database, for a few seconds. */
    roomPersistLease: (name: string) => `${room(name)}:persist-lease`,
    /** Every room's meta key, for SCAN MATCH (on a cluster, on every master). */
    roomMetaPattern: () => `${prefix}{room:*}:meta`,
    /** Rooms with messages not yet written behind; added to after each append (one key, any slot). */
    persistDirty: () => `${prefix}persist:dirty`,
    /** A user's read position per room: a hash under the user's hash tag (one slot in both layouts). */
    readPositions: (userId: string) => `${prefix}{user:${userId}}:reads`,
    /** A user's direct-message inbox: its head, its entries and its dedup keys share the user's hash tag. */
    inboxMeta: (userId: string) => `${prefix}{user:${userId}}:inbox:meta`,
    inboxLog: (userId: string) => `${prefix}{user:${userId}}:inbox:log`,
    inboxDedup: (userId: string, from: string, to: string, clientMsgId: string) =>
      `${prefix}{user:${userId}}:inbox:dedup:${from.length}:${from}:${to.length}:${to}:${clientMsgId}`,
    /** Held by the instance writing the inbox's entries behind into the database, for a few seconds. */
    inboxPersistLease: (userId: string) => `${prefix}{user:${userId}}:inbox:persist-lease`,
    /** Every inbox's meta key, for SCAN MATCH (on a cluster, on every master). */
    inboxMetaPattern: () => `${prefix}{user:*}:inbox:meta`,
    /** Inboxes with entries not yet written behind; added to after each append (one key, any slot). */
    inboxPersistDirty: () => `${prefix}persist:inbox-dirty`,
    channelPrefix: () => `${prefix}bp:`,
  };
  if (layout === "single")
    return {
      ...shared,
      /** The dedup key of a room message: per sender and clientMsgId, as earlier releases wrote it. */
      messageDedup: (_room: string, userId: string, clientMsgId: string) =>
        `${prefix}dedup:${userId}:message:${clientMsgId}`,
      dedup: (userId: string, clientMsgId: string) => `${prefix}dedup:${userId}:${clientMsgId}`,
      session: (key: string) => `${prefix}session:${key}`,
      presenceConnections: (name: string) => `${prefix}{presence:${name}}:connections`,
      presenceUsers: (name: string) => `${prefix}{presence:${name}}:users`,
      instances: () => `${prefix}instances`,
      instanceAlive: (instanceId: string) => `${prefix}instance:${instanceId}:alive`,
      instanceRooms: (instanceId: string) => `${prefix}instance:${instanceId}:rooms`,
      instanceEnvelopes: () => `${prefix}instance-envelopes`,
      channel: memo((topic) => `${prefix}bp:${topic}`),
    };
  const user = (userId: string) => `${prefix}{user:${userId}}`;
  return {
    ...shared,
    /**
     * Under the room's tag, so the append script checks and writes it in the room's slot: a
     * clientMsgId is then deduplicated per room (a client resends a message to the room it sent it to).
     */
    messageDedup: (name: string, userId: string, clientMsgId: string) => `${room(name)}:dedup:${userId}:${clientMsgId}`,
    dedup: (userId: string, clientMsgId: string) => `${user(userId)}:dedup:${clientMsgId}`,
    /** `key` is `<connectionId>:<userId>` (see sessionKey; a connectionId holds no `:`). */
    session: (key: string) => {
      const colon = key.indexOf(":");
      return colon < 0 ? `${prefix}{session:${key}}` : `${user(key.slice(colon + 1))}:session:${key.slice(0, colon)}`;
    },
    presenceConnections: (name: string) => `${room(name)}:presence:connections`,
    presenceUsers: (name: string) => `${room(name)}:presence:users`,
    instances: () => `${prefix}{instances}`,
    instanceAlive: (instanceId: string) => `${prefix}{instances}:${instanceId}:alive`,
    instanceRooms: (instanceId: string) => `${prefix}{instances}:${instanceId}:rooms`,
    /** Hash: instance id -> the backplane envelope versions it reads (src/backplane/versions.ts). */
    instanceEnvelopes: () => `${prefix}{instances}:envelopes`,
    /** A topic is `room:<name>`, `user:<id>` or `all`: the channel shares the slot of its keys. */
    channel: memo((topic) => `${prefix}bp:{${topic}}`),
  };
}

export type RedisKeys = ReturnType<typeof redisKeys>;
