import { ChatError } from "../chat/errors";
import type { Logger } from "../observability/logger";
import type { Metrics } from "../observability/metrics";
import { ErrorCode } from "../protocol/codes";

/**
 * A store call refused because Redis is unreachable, hung or timed out. It is a `ChatError`: the
 * client gets `unavailable` (temporary) and resends with the same clientMsgId, which the dedup makes
 * exactly-once. Nothing is served from memory instead: what a client is told was stored must be in
 * the shared history, or it would be lost (and its offset given out twice) when Redis answers again.
 */
export class StoreUnavailable extends ChatError {
  constructor(store: string) {
    super(ErrorCode.Unavailable, `the ${store} store is unreachable; retry`);
    this.name = "StoreUnavailable";
  }
}

/** At most one "redis call failed" warning per store this often; the metric counts every one. */
const WARN_INTERVAL_MS = 10_000;

/**
 * The store, refusing every call with `StoreUnavailable` while Redis (or, with `keyOf`, the shard of
 * the call's key) is down, at once, without sending a command, so a hung Redis queues nothing; and
 * turning a failed or timed-out call into one.
 * A Redis error reply (a bug or bad data, not an outage) is passed on unchanged. `close` and the
 * methods in `always` (registrations) are not guarded.
 */
export function refuseWhileDown<T extends object>(
  name: string,
  store: T,
  deps: {
    /** With the key of a call (see `keyOf`): whether that key can be used now. */
    isUp: (key?: string) => boolean;
    metrics: Metrics;
    logger: Logger;
    always?: (keyof T)[];
    /**
     * The Redis key a call's arguments name, when its availability depends on it (on a cluster, the
     * shard of the key): a call is then refused only while that key's shard is down.
     */
    keyOf?: (args: unknown[]) => string | undefined;
  },
): T {
  const always = new Set<PropertyKey>(["close", ...(deps.always ?? [])]);
  let warnedAt = Number.NEGATIVE_INFINITY;
  let suppressed = 0;
  const refused = deps.metrics.storeUnavailable.labels(name);
  return new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== "function" || always.has(property)) return value;
      return async (...args: unknown[]) => {
        if (!deps.isUp(deps.keyOf?.(args))) {
          refused.inc();
          throw new StoreUnavailable(name);
        }
        try {
          return await value.apply(target, args);
        } catch (error) {
          if ((error as Error).name === "ReplyError") throw error;
          refused.inc();
          deps.metrics.backplaneErrors.labels(name).inc();
          const now = Date.now();
          if (now - warnedAt >= WARN_INTERVAL_MS) {
            deps.logger.warn("redis call failed; refused", {
              store: name,
              op: String(property),
              error: (error as Error).message,
              alsoFailedSinceLastWarning: suppressed,
            });
            warnedAt = now;
            suppressed = 0;
          } else suppressed++;
          throw new StoreUnavailable(name);
        }
      };
    },
  });
}
