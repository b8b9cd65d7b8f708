import type { RedisCommands } from "../redis/clients";
import type { RedisKeys } from "../redis/keys";
import { RedisScript } from "../redis/script";
import type { Session, SessionStore } from "./sessions";

// A release before sessions were keyed by user saved them under the connectionId alone. During the
// blue-green deploy that brings this release (and for SESSION_TTL after it), such a session is
// still taken, but only by its own user: another user's take leaves it where it is.
const TAKE_LEGACY = new RedisScript(`
local value = redis.call('GET', KEYS[1])
if not value then return false end
local ok, session = pcall(cjson.decode, value)
if not ok or type(session) ~= 'table' or session.userId ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
return value
`);

export class RedisSessionStore implements SessionStore {
  constructor(
    private readonly redis: RedisCommands,
    private readonly keys: RedisKeys,
  ) {}

  async save(key: string, session: Session, ttlSeconds: number) {
    await this.redis.set(this.keys.session(key), JSON.stringify(session), "EX", ttlSeconds);
  }

  async take(key: string) {
    // GETDEL: of two instances racing to resume one connectionId, only one gets the session.
    const value =
      (await this.redis.getdel(this.keys.session(key))) ?? ((await this.takeLegacy(key)) as string | null | undefined);
    return value ? (JSON.parse(value) as Session) : undefined;
  }

  /** The session an older release saved under `connectionId` alone (see sessionKey), if its user's. */
  private takeLegacy(key: string) {
    const colon = key.indexOf(":");
    // No earlier release ran on a cluster: it has no such sessions.
    if (colon < 0 || this.keys.layout === "cluster") return undefined;
    return TAKE_LEGACY.run(this.redis, [this.keys.session(key.slice(0, colon))], [key.slice(colon + 1)]);
  }

  async close() {}
}
