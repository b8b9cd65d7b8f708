import type { Logger } from "../observability/logger";
import type { RedisCommands } from "../redis/clients";
import type { RedisKeys } from "../redis/keys";
import type { PresenceStore } from "./presence";

// Per room: a hash of connections (`<instance>|<connectionId>` -> userId) and a hash of users
// (userId -> number of connections). Both change together in one script, so the first-in and
// last-out answers hold across instances.

const ADD = `
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
return redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 and 1 or 0
`;

const REMOVE = `
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[2])
  return 1
end
return 0
`;

// Removes every connection of a dead instance from a room; returns the users who left entirely.
const EXPIRE_INSTANCE = `
local left = {}
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local field, user = entries[i], entries[i + 1]
  if string.sub(field, 1, string.len(ARGV[1])) == ARGV[1] then
    redis.call('HDEL', KEYS[1], field)
    if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
      redis.call('HDEL', KEYS[2], user)
      table.insert(left, user)
    end
  end
end
return left
`;

/**
 * Presence across instances. Each instance keeps a liveness key alive (TTL two thirds of
 * PRESENCE_TTL, refreshed every quarter) and sweeps every sixth: an instance whose key is gone has
 * its members removed by whichever instance sweeps first, well within PRESENCE_TTL.
 */
export class RedisPresenceStore implements PresenceStore {
  private handler: (room: string, userIds: string[]) => void = () => {};
  private readonly timers: ReturnType<typeof setInterval>[] = [];

  constructor(
    private readonly redis: RedisCommands,
    private readonly keys: RedisKeys,
    private readonly options: { instanceId: string; ttlSeconds: number; logger: Logger },
  ) {
    const ttlMs = options.ttlSeconds * 1000;
    this.timers.push(setInterval(() => void this.heartbeat().catch(() => {}), Math.floor(ttlMs / 4)));
    this.timers.push(setInterval(() => void this.sweep().catch(() => {}), Math.floor(ttlMs / 6)));
    void this.heartbeat().catch(() => {});
  }

  private field(connectionId: string) {
    return `${this.options.instanceId}|${connectionId}`;
  }

  async heartbeat() {
    await this.alive(this.redis.multi()).exec();
  }

  /** Queues the liveness refresh; every add carries one so no member is held by an unknown instance. */
  private alive(multi: ReturnType<RedisCommands["multi"]>) {
    const { keys, options } = this;
    return multi
      .set(keys.instanceAlive(options.instanceId), "1", "PX", Math.floor((options.ttlSeconds * 2000) / 3))
      .sadd(keys.instances(), options.instanceId);
  }

  /** Removes the members of instances whose liveness key expired. */
  async sweep() {
    const { keys, options } = this;
    const instances = await this.redis.smembers(keys.instances());
    for (const instance of instances) {
      if (instance === options.instanceId) continue;
      if ((await this.redis.exists(keys.instanceAlive(instance))) === 1) continue;
      const rooms = await this.redis.smembers(keys.instanceRooms(instance));
      for (const room of rooms) {
        const left = (await this.redis.eval(
          EXPIRE_INSTANCE,
          2,
          keys.presenceConnections(room),
          keys.presenceUsers(room),
          `${instance}|`,
        )) as string[];
        if (left.length > 0) this.handler(room, left);
      }
      await this.redis.multi().del(keys.instanceRooms(instance)).srem(keys.instances(), instance).exec();
      options.logger.warn("removed the presence of a dead instance", { deadInstance: instance, rooms: rooms.length });
    }
  }

  /**
   * The room is listed under this instance (with its liveness) before the member is added, so a
   * member is never held by an instance the sweep does not know of. Two steps, as the registry and
   * the room are in different slots of a cluster.
   */
  async add(room: string, userId: string, connectionId: string) {
    const { keys } = this;
    await this.alive(this.redis.multi()).sadd(keys.instanceRooms(this.options.instanceId), room).exec();
    const first = await this.redis.eval(
      ADD,
      2,
      keys.presenceConnections(room),
      keys.presenceUsers(room),
      this.field(connectionId),
      userId,
    );
    return first === 1;
  }

  async remove(room: string, userId: string, connectionId: string) {
    const { keys } = this;
    const last = await this.redis.eval(
      REMOVE,
      2,
      keys.presenceConnections(room),
      keys.presenceUsers(room),
      this.field(connectionId),
      userId,
    );
    return last === 1;
  }

  async members(room: string) {
    return (await this.redis.hkeys(this.keys.presenceUsers(room))).sort();
  }

  onExpired(handler: (room: string, userIds: string[]) => void) {
    this.handler = handler;
  }

  async close() {
    for (const timer of this.timers) clearInterval(timer);
    // A clean stop leaves no liveness to wait out: connections were released by the drain.
    await this.redis.del(this.keys.instanceAlive(this.options.instanceId)).catch(() => {});
  }
}
