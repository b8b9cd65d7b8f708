import type { RedisCommands } from "./clients";

/**
 * A Lua script sent by its SHA1 (EVALSHA), and in full only when Redis does not know it yet (after
 * a restart or a SCRIPT FLUSH): a hot-path script is not re-sent and re-hashed on every call.
 */
export class RedisScript {
  readonly sha: string;

  constructor(readonly lua: string) {
    this.sha = new Bun.CryptoHasher("sha1").update(lua).digest("hex");
  }

  /** On a cluster every key must be in one slot: the script runs on the node that owns it. */
  async run(redis: RedisCommands, keys: string[], args: (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error as Error).message?.startsWith("NOSCRIPT")) throw error;
      return redis.eval(this.lua, keys.length, ...keys, ...args);
    }
  }
}
