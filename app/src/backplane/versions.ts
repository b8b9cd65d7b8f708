import type { Logger } from "../observability/logger";
import type { RedisCommands } from "../redis/clients";
import type { RedisKeys } from "../redis/keys";
import { type EnvelopeVersion, READ_VERSIONS } from "./envelope";

/** Which envelope version to publish in. */
export interface EnvelopeVersions {
  /** 2 only while every live instance of the deployment reads it; 1 (read by every release) otherwise. */
  version(): EnvelopeVersion;
  close(): Promise<void>;
}

/** Publishes v1 for good: a single instance, or a deployment that must not use v2. */
export const V1_ONLY: EnvelopeVersions = { version: () => 1, close: async () => {} };

/** How often the registry is read; an older release that starts gets v1 envelopes within this. */
export const CHECK_INTERVAL_MS = 1000;

/**
 * Negotiates the envelope version through the instance registry. Each instance advertises the
 * versions it reads in a hash beside the registry (`instanceEnvelopes`); an older release does not
 * write it. Every second each instance re-advertises and reads the registry: it publishes v2 only
 * when every live instance (in the registry, liveness key present, see RedisPresenceStore)
 * advertises 2, and v1 from the start until the first read says so.
 *
 * During a blue-green deploy the previous release therefore keeps receiving v1 for as long as it is
 * alive. When an older release starts beside instances already publishing v2 (a rollback), what they
 * publish in the second before they notice is lost to it; a room message lost that way is filled in
 * from history when the next one arrives (its offset shows the gap), as after any pub/sub loss.
 */
export class RedisEnvelopeVersions implements EnvelopeVersions {
  private current: EnvelopeVersion = 1;
  private readonly timer: ReturnType<typeof setInterval>;
  private checking = false;

  constructor(
    private readonly redis: RedisCommands,
    private readonly keys: RedisKeys,
    private readonly options: { instanceId: string; logger: Logger; intervalMs?: number },
  ) {
    this.timer = setInterval(() => void this.check(), options.intervalMs ?? CHECK_INTERVAL_MS);
    // Commands fail at once while the connection is not up (no offline queue): check as soon as it
    // is, rather than publishing v1 until the next tick.
    redis.on("ready", this.onReady);
    void this.check();
  }

  version() {
    return this.current;
  }

  /** Advertises this instance's versions and settles the one to publish in; Redis errors keep it. */
  async check(): Promise<EnvelopeVersion> {
    if (this.checking) return this.current;
    this.checking = true;
    try {
      const { keys, options } = this;
      const replies = await this.redis
        .multi()
        .hset(keys.instanceEnvelopes(), options.instanceId, READ_VERSIONS.join(","))
        .smembers(keys.instances())
        .hgetall(keys.instanceEnvelopes())
        .exec();
      if (!replies || replies.some(([error]) => error)) return this.current;
      const members = replies[1]![1] as string[];
      const advertised = replies[2]![1] as Record<string, string>;
      const unknown = members.filter((id) => id !== options.instanceId && !reads2(advertised[id]));
      let next: EnvelopeVersion = 2;
      if (unknown.length > 0) {
        const alive = await Promise.all(unknown.map((id) => this.redis.exists(keys.instanceAlive(id))));
        if (alive.some((n) => n === 1)) next = 1;
      }
      // Entries of instances gone from the registry (the presence sweep removed them).
      const registered = new Set(members);
      const gone = Object.keys(advertised).filter((id) => id !== options.instanceId && !registered.has(id));
      if (gone.length > 0) await this.redis.hdel(keys.instanceEnvelopes(), ...gone);
      if (next !== this.current)
        options.logger.info("backplane envelope version changed", {
          version: next,
          reason: next === 2 ? "every live instance reads v2" : "a live instance reads only v1",
        });
      this.current = next;
    } catch {
      // Redis unreachable: keep the version; nothing is published meanwhile anyway.
    } finally {
      this.checking = false;
    }
    return this.current;
  }

  /**
   * Stops checking. The advertisement stays: removing it while this instance's liveness key lasts
   * would make the others fall back to v1 during every drain; the others remove it once the
   * presence sweep has taken this instance out of the registry.
   */
  async close() {
    clearInterval(this.timer);
    this.redis.off("ready", this.onReady);
  }

  private readonly onReady = () => void this.check();
}

function reads2(advertised: string | undefined) {
  return advertised?.split(",").includes("2") === true;
}
