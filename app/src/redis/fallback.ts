import type { Logger } from "../observability/logger";
import type { Metrics } from "../observability/metrics";

/**
 * Degraded mode for one store that holds nothing a client was promised to keep (presence, sessions,
 * read positions): while Redis is unreachable (or a call to it fails) the call goes to an
 * in-memory twin, so this instance keeps serving its own clients. History never falls back (see
 * `refuseWhileDown`). `close` closes both; methods listed in `primaryOnly` (registrations such as `onExpired`) always
 * go to the Redis store.
 */
export function withFallback<T extends { close(): Promise<void> }>(
  name: string,
  primary: T,
  fallback: T,
  deps: { isUp: () => boolean; metrics: Metrics; logger: Logger; primaryOnly?: (keyof T)[] },
): T {
  const primaryOnly = new Set<PropertyKey>(deps.primaryOnly ?? []);
  return new Proxy(primary, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== "function") return value;
      if (property === "close") return async () => void (await Promise.allSettled([primary.close(), fallback.close()]));
      const local = Reflect.get(fallback, property) as unknown;
      if (typeof local !== "function" || primaryOnly.has(property)) return value.bind(target);
      return async (...args: unknown[]) => {
        if (!deps.isUp()) return local.apply(fallback, args);
        try {
          return await value.apply(target, args);
        } catch (error) {
          // Redis answered with an error: a bug or bad data, not an outage. Serving it locally would hide it.
          if ((error as Error).name === "ReplyError") throw error;
          deps.metrics.backplaneErrors.labels(name).inc();
          deps.logger.warn("redis call failed; served locally", {
            store: name,
            op: String(property),
            error: (error as Error).message,
          });
          return local.apply(fallback, args);
        }
      };
    },
  });
}
