import type { RedisCommands } from "../redis/clients";
import type { RedisKeys } from "../redis/keys";
import { RedisScript } from "../redis/script";
import type { ReadPosition, ReadPositionStore } from "./reads";

// A user's positions are one hash under the user's hash tag, field = room, value = "<epoch> <offset>"
// (an epoch has no space). The script keeps the further of the stored and the new position and
// renews the hash's TTL: positions of a user who reads nothing for that long are forgotten.
const ADVANCE = new RedisScript(`
local stored = redis.call('HGET', KEYS[1], ARGV[1])
local next = ARGV[2] .. ' ' .. ARGV[3]
if stored then
  local epoch, offset = string.match(stored, '^(%S+) (%d+)$')
  if epoch == ARGV[2] and tonumber(offset) >= tonumber(ARGV[3]) then next = stored end
end
redis.call('HSET', KEYS[1], ARGV[1], next)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return next
`);

function decode(value: string | null | undefined): ReadPosition | undefined {
  if (!value) return undefined;
  const space = value.lastIndexOf(" ");
  return { epoch: value.slice(0, space), offset: Number(value.slice(space + 1)) };
}

/** Read positions in Redis, shared by every instance. */
export class RedisReadPositionStore implements ReadPositionStore {
  constructor(
    private readonly redis: RedisCommands,
    private readonly keys: RedisKeys,
    private readonly ttlSeconds: number,
  ) {}

  async advance(userId: string, room: string, position: ReadPosition) {
    const stored = (await ADVANCE.run(
      this.redis,
      [this.keys.readPositions(userId)],
      [room, position.epoch, position.offset, this.ttlSeconds],
    )) as string;
    return decode(stored)!;
  }

  async get(userId: string, room: string) {
    return decode(await this.redis.hget(this.keys.readPositions(userId), room));
  }

  async close() {}
}
