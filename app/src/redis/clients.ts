import Redis, { type Cluster } from "ioredis";
import type { Logger } from "../observability/logger";
import type { Metrics } from "../observability/metrics";
import type { KeyLayout } from "./keys";

/** The command connection of the stores: one Redis, or a Redis Cluster routing each key to its slot. */
export type RedisCommands = Redis | Cluster;

/** What the backplane publishes with: PUBLISH on one Redis, SPUBLISH (sharded) on a cluster. */
export interface BackplanePublisher {
  publish(channel: string, message: string): Promise<unknown>;
}

/**
 * What the backplane subscribes with: one subscribed connection on one Redis; on a cluster, one per
 * master (see ShardSubscriber). `status` is "ready" when it can subscribe; "ready" is emitted then.
 */
export interface BackplaneSubscriber {
  readonly status: string;
  /**
   * Whether `channel` can be subscribed now, when that depends on the channel (on a cluster, on the
   * master of its slot); without it, `status` says.
   */
  ready?(channel: string): boolean;
  subscribe(...channels: string[]): Promise<unknown>;
  unsubscribe(...channels: string[]): Promise<unknown>;
  on(event: "message", listener: (channel: string, message: string) => void): unknown;
  on(event: "ready", listener: () => void): unknown;
  /** Channels whose subscription was lost and is back (emitted by the cluster's ShardSubscriber). */
  on(event: "resubscribed", listener: (channels: string[]) => void): unknown;
}

export interface RedisClients {
  /** "single" keeps the key names of earlier releases; "cluster" tags keys by room and user. */
  layout: KeyLayout;
  /** Commands of the stores. */
  commands: RedisCommands;
  /** Backplane publishes (PUBLISH, or SPUBLISH on a cluster). */
  publisher: BackplanePublisher;
  /** Subscriber of the backplane (a subscribed connection can run no other command). */
  subscriber: BackplaneSubscriber;
  /**
   * "up" while both connections are ready and answering. With a key: whether that key can be used
   * now, which on a cluster asks only about the master of its slot (and the subscriptions of that
   * slot's channels), so one failed shard does not stop the others' rooms. One Redis answers the same
   * for every key.
   */
  status(key?: string): "up" | "down";
  /**
   * Quits both connections, waiting at most `deadlineMs` for Redis to answer, then cuts them.
   * Resolves with what it gave up on: "redis down" when Redis was down, or its connection was cut
   * as hung, before it answered; "redis quit" when it did not answer in time.
   */
  close(deadlineMs?: number): Promise<string[]>;
}

export interface RedisTimings {
  /** A command without a reply after this long fails ("Command timed out"). */
  commandTimeoutMs: number;
  /** Both connections are pinged this often, so a hung Redis is noticed without traffic. */
  probeIntervalMs: number;
  /** "redis unreachable" is logged at most this often while Redis stays unreachable. */
  warnIntervalMs: number;
}

export const REDIS_TIMINGS: RedisTimings = { commandTimeoutMs: 2000, probeIntervalMs: 1000, warnIntervalMs: 60_000 };

/**
 * Opens the two connections in the background: the server starts whether or not Redis answers.
 *
 * Every command is bounded. Commands fail at once while a connection is down (no offline queue); a
 * command without a reply fails after `commandTimeoutMs`; and a connection that has commands waiting
 * and receives nothing for that long (a hung Redis, a dead peer behind a firewall) is cut, which
 * fails what it had queued and reconnects. Failed commands are never re-sent on reconnect: their
 * callers already answered with an error. So a hung Redis holds at most `commandTimeoutMs` worth
 * of commands in memory, and `status()` says "down" within `probeIntervalMs + commandTimeoutMs`.
 */
export function createRedisClients(
  url: string,
  deps: { logger: Logger; metrics: Metrics },
  timings: RedisTimings = REDIS_TIMINGS,
): RedisClients {
  const { logger, metrics } = deps;
  const address = redisAddress(url);
  const options = {
    enableOfflineQueue: false,
    // Fail what a lost connection had in flight at once (a retry is the client's, with its clientMsgId).
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: timings.commandTimeoutMs,
    socketTimeout: timings.commandTimeoutMs,
    connectTimeout: timings.commandTimeoutMs,
    keepAlive: 10_000,
    retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
    lazyConnect: false,
  };
  const commands = new Redis(url, { ...options, connectionName: "chat-commands" });
  const subscriber = new Redis(url, { ...options, connectionName: "chat-subscriber", autoResubscribe: true });
  // After a reconnect ioredis reports "ready" before it has subscribed again; a message published
  // in between would reach no other instance. A PING sent after the SUBSCRIBEs is answered after
  // them, so the subscriber counts as ready once that PING is answered.
  let resubscribed = false;
  subscriber.on("close", () => {
    resubscribed = false;
  });
  subscriber.on("ready", () => {
    subscriber.ping().then(
      () => {
        resubscribed = true;
        update();
      },
      () => {},
    );
  });
  const isUp = () => commands.status === "ready" && subscriber.status === "ready" && resubscribed;

  let wasUp = false;
  let warnedAt = Number.NEGATIVE_INFINITY;
  let lastError = "";
  const warnUnreachable = (force: boolean) => {
    const now = Date.now();
    if (!force && now - warnedAt < timings.warnIntervalMs) return;
    warnedAt = now;
    logger.warn("redis unreachable; room messages are refused until it answers", { address, error: lastError });
  };
  const update = () => {
    const up = isUp();
    metrics.backplaneUp.set(up ? 1 : 0);
    if (up && !wasUp) logger.info("redis connected", { address });
    if (!up && wasUp) {
      logger.warn("redis connection lost; room messages are refused until it is back", { address });
      warnedAt = Date.now();
    }
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
      lastError = error.message;
      logger.debug("redis error", { address, error: error.message });
      // Unreachable from the start (or still, after a loss): said once now, then once a minute.
      if (!isUp()) warnUnreachable(false);
    });
  }
  update();

  // A hung Redis keeps its TCP connections open: only a command left without a reply shows it.
  const probe = setInterval(() => {
    for (const client of [commands, subscriber]) if (client.status === "ready") client.ping().catch(() => {});
    if (!isUp() && Date.now() - warnedAt >= timings.warnIntervalMs) warnUnreachable(true);
  }, timings.probeIntervalMs);
  probe.unref?.();

  return {
    layout: "single",
    commands,
    publisher: commands,
    subscriber,
    status: () => (isUp() ? "up" : "down"),
    close: async (deadlineMs = timings.commandTimeoutMs) => {
      clearInterval(probe);
      const started = Date.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = (ms: number) =>
        new Promise<"late">((resolve) => {
          timer = setTimeout(() => resolve("late"), ms);
        });
      // A PING first: QUIT is answered by ioredis itself when the connection drops meanwhile, so
      // only a PING tells whether Redis was there to say goodbye to.
      const answered = isUp()
        ? await Promise.race([
            Promise.all([commands.ping(), subscriber.ping()]).then(
              () => "up" as const,
              () => "down" as const,
            ),
            late(deadlineMs),
          ])
        : "down";
      clearTimeout(timer);
      if (answered === "up") {
        await Promise.race([
          Promise.allSettled([commands.quit(), subscriber.quit()]),
          late(Math.max(0, deadlineMs - (Date.now() - started))),
        ]);
        clearTimeout(timer);
      }
      commands.disconnect();
      subscriber.disconnect();
      return answered === "up" ? [] : answered === "down" ? ["redis down"] : ["redis quit"];
    },
  };
}

/** host:port of a Redis URL, for logs: never its user name or password. */
export function redisAddress(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || "6379"}`;
  } catch {
    return "(invalid url)";
  }
}
