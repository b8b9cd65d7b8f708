import type { RedisCommands } from "../redis/clients";
import type { RedisKeys } from "../redis/keys";
import type { DedupAnswer, DedupStore } from "./dedup";

const PENDING = "";
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** SET NX claims a pair for the window; the winner overwrites the empty value with its answer. */
export class RedisDedupStore implements DedupStore {
  constructor(
    private readonly redis: RedisCommands,
    private readonly keys: RedisKeys,
    private readonly windowSeconds: number,
    /** How long a losing claim waits for the winner's answer. */
    private readonly waitMs = 2000,
  ) {}

  async claim(
    userId: string,
    clientMsgId: string,
  ): Promise<{ claimed: true } | { claimed: false; answer?: DedupAnswer }> {
    const key = this.keys.dedup(userId, clientMsgId);
    const won = await this.redis.set(key, PENDING, "EX", this.windowSeconds, "NX");
    if (won === "OK") return { claimed: true };
    const deadline = Date.now() + this.waitMs;
    for (;;) {
      const value = await this.redis.get(key);
      if (value === null) return this.claim(userId, clientMsgId);
      if (value !== PENDING) return { claimed: false, answer: JSON.parse(value) as DedupAnswer };
      if (Date.now() > deadline) return { claimed: false };
      await sleep(20);
    }
  }

  async remember(userId: string, clientMsgId: string, answer: DedupAnswer) {
    await this.redis.set(this.keys.dedup(userId, clientMsgId), JSON.stringify(answer), "EX", this.windowSeconds);
  }

  async release(userId: string, clientMsgId: string) {
    await this.redis.del(this.keys.dedup(userId, clientMsgId));
  }

  async close() {}
}
