import Redis from "ioredis";
import type { Logger } from "../observability/logger";
import type { Metrics } from "../observability/metrics";

export interface RedisClients {
  /** Commands of the stores and backplane publishes. */
  commands: Redis;
  /** Subscriber connection of the backplane (a subscribed connection can run no other command). */
  subscriber: Redis;
  /** "up" while both connections are ready. */
  status(): "up" | "down";
  close(): Promise<void>;
}

/**
 * Opens the two connections in the background: the server starts whether or not Redis answers.
 * Commands fail at once while a connection is down (no offline queue), so callers fall back to
 * local behaviour instead of waiting; ioredis reconnects with a capped backoff and resubscribes.
 */
export function createRedisClients(url: string, deps: { logger: Logger; metrics: Metrics }): RedisClients {
  const { logger, metrics } = deps;
  const options = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
    lazyConnect: false,
  };
  const commands = new Redis(url, { ...options, connectionName: "chat-commands" });
  const subscriber = new Redis(url, { ...options, connectionName: "chat-subscriber", autoResubscribe: true });

  let wasUp = false;
  const update = () => {
    const up = commands.status === "ready" && subscriber.status === "ready";
    metrics.backplaneUp.set(up ? 1 : 0);
    if (up && !wasUp) logger.info("redis connected", { url: redact(url) });
    if (!up && wasUp) logger.warn("redis connection lost; serving local delivery only", { url: redact(url) });
    wasUp = up;
  };
  for (const client of [commands, subscriber]) {
    let readyBefore = false;
    client.on("ready", () => {
      if (readyBefore) metrics.backplaneReconnects.inc();
      readyBefore = true;
      update();
    });
    client.on("end", update);
    client.on("close", update);
    client.on("error", (error: Error) => {
      metrics.backplaneErrors.labels("connection").inc();
      logger.debug("redis error", { error: error.message });
    });
  }
  update();

  return {
    commands,
    subscriber,
    status: () => (commands.status === "ready" && subscriber.status === "ready" ? "up" : "down"),
    close: async () => {
      await Promise.allSettled([commands.quit(), subscriber.quit()]);
      commands.disconnect();
      subscriber.disconnect();
    },
  };
}

function redact(url: string) {
  return url.replace(/\/\/[^@/]*@/, "//***@");
}
