import type Redis from "ioredis";
import type { RedisKeys } from "../redis/keys";
import type { Session, SessionStore } from "./sessions";

export class RedisSessionStore implements SessionStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  async save(connectionId: string, session: Session, ttlSeconds: number) {
    await this.redis.set(this.keys.session(connectionId), JSON.stringify(session), "EX", ttlSeconds);
  }

  async take(connectionId: string) {
    // GETDEL: of two instances racing to resume one connectionId, only one gets the session.
    const value = await this.redis.getdel(this.keys.session(connectionId));
    return value ? (JSON.parse(value) as Session) : undefined;
  }

  async close() {}
}
