import { Cluster, type RedisOptions } from "ioredis";
import type { Logger } from "../observability/logger";
import type { Metrics } from "../observability/metrics";
import { REDIS_TIMINGS, type RedisClients, type RedisTimings } from "./clients";
import type { ClusterTarget } from "./cluster-nodes";
import { ShardSubscriber } from "./shard-subscriber";
import { keySlot } from "./slots";

/**
 * How often the slot map is read again while every master answers and every wanted channel is
 * subscribed. ioredis reads it on a connection of its own each time (connect, CLIENT SETNAME,
 * CLUSTER SLOTS, close), which at once a second cost an idle instance about 2 % of a core. While a
 * master does not answer or a channel is lost, the probe reads it every `probeIntervalMs` instead,
 * and a MOVED answer makes ioredis read it at once: a failover or a resharding is followed as fast.
 */
export const SLOTS_REFRESH_MS = 10_000;

/**
 * The Redis Cluster twin of createRedisClients: ioredis' Cluster client for commands (each routed to
 * the master of its key's slot, MOVED and ASK followed) and a ShardSubscriber for the backplane.
 *
 * The same bounds hold as on one Redis: no offline queue; a command without a reply fails after
 * `commandTimeoutMs` and a node that keeps one waiting that long is cut; a command whose node closed
 * its connection, or that finds the cluster down, fails at once instead of being sent again (it may
 * have run: the client resends it with its clientMsgId, which the dedup makes exactly-once). Only
 * redirections, which Redis answers without running the command, are followed.
 *
 * `status()` is "up" while the cluster client is ready, every master answers its PING and every
 * wanted channel is subscribed on its slot's master. A master failing makes it "down" until its
 * replica has taken over and the client has followed (cluster-node-timeout, then at most
 * `probeIntervalMs` plus a reconnect: the slot map is read on every probe while it is "down").
 * `status(key)` asks only about the key's slot: its master and its channels. Room messages are
 * refused with `unavailable` while their room's slot is "down", so the rooms of the other shards
 * keep chatting through a failover.
 */
export function createClusterClients(
  target: ClusterTarget,
  deps: { logger: Logger; metrics: Metrics },
  timings: RedisTimings = REDIS_TIMINGS,
): RedisClients {
  const { logger, metrics } = deps;
  const address = target.nodes.map((n) => `${n.host}:${n.port}`).join(",");
  const nodeOptions: RedisOptions = {
    username: target.username || undefined,
    password: target.password || undefined,
    tls: target.tls ? {} : undefined,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    enableOfflineQueue: false,
    commandTimeout: timings.commandTimeoutMs,
    socketTimeout: timings.commandTimeoutMs,
    connectTimeout: timings.commandTimeoutMs,
    keepAlive: 10_000,
    retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
  };
  const { retryStrategy: _nodeRetry, enableOfflineQueue: _queue, ...redisOptions } = nodeOptions;
  const commands = new Cluster(target.nodes, {
    enableOfflineQueue: false,
    scaleReads: "master",
    maxRedirections: 16,
    // Not re-sent after a lost connection or CLUSTERDOWN (see above): 0 turns those retries off.
    retryDelayOnFailover: 0,
    retryDelayOnClusterDown: 0,
    retryDelayOnTryAgain: 100,
    slotsRefreshTimeout: timings.commandTimeoutMs,
    slotsRefreshInterval: SLOTS_REFRESH_MS,
    clusterRetryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
    redisOptions: { ...redisOptions, connectionName: "chat-commands" },
  });
  const subscriber = new ShardSubscriber(commands, nodeOptions, {
    probeIntervalMs: timings.probeIntervalMs,
    onError: (error) => {
      metrics.backplaneErrors.labels("connection").inc();
      logger.debug("redis cluster subscriber error", { address, error: error.message });
    },
  });

  /** Masters whose last PING failed (a hung or dead node), until one answers again. */
  const silent = new Set<string>();
  const isUp = () => commands.status === "ready" && silent.size === 0 && subscriber.status === "ready";
  /** The master of the key's slot is known and answers, and the slot's channels are subscribed. */
  const isUpFor = (key: string) => {
    if (commands.status !== "ready") return false;
    const slot = keySlot(key);
    const owner = commands.slots[slot]?.[0];
    return owner !== undefined && !silent.has(owner) && subscriber.slotInSync(slot);
  };
  const why = () =>
    commands.status !== "ready"
      ? `cluster client ${commands.status}`
      : silent.size > 0
        ? `no answer from ${[...silent].join(", ")}: ${lastError}`
        : subscriber.why();

  let wasUp = false;
  let warnedAt = Number.NEGATIVE_INFINITY;
  let lastError = "";
  let readyBefore = false;
  const warnUnreachable = (force: boolean) => {
    const now = Date.now();
    if (!force && now - warnedAt < timings.warnIntervalMs) return;
    warnedAt = now;
    logger.warn("redis cluster unreachable; room messages are refused until it answers", {
      address,
      error: lastError,
    });
  };
  const update = () => {
    const up = isUp();
    metrics.backplaneUp.set(up ? 1 : 0);
    if (up && !wasUp) {
      if (readyBefore) metrics.backplaneReconnects.inc();
      readyBefore = true;
      logger.info("redis cluster connected", { address, masters: commands.nodes("master").length });
    }
    if (!up && wasUp) {
      logger.warn("redis cluster lost a node or a subscription; room messages are refused until it is back", {
        address,
        reason: why(),
      });
      warnedAt = Date.now();
    }
    wasUp = up;
  };
  commands.on("ready", update);
  commands.on("end", update);
  commands.on("close", update);
  commands.on("+node", update);
  commands.on("-node", update);
  subscriber.on("ready", update);
  commands.on("error", (error: Error) => {
    metrics.backplaneErrors.labels("connection").inc();
    lastError = error.message;
    logger.debug("redis cluster error", { address, error: error.message });
    if (!isUp()) warnUnreachable(false);
  });
  commands.on("node error", (error: Error, key: string) => {
    lastError = `${key}: ${error.message}`;
    logger.debug("redis cluster node error", { node: key, error: error.message });
  });
  update();

  const probe = setInterval(() => {
    if (commands.status === "ready") {
      const masters = commands.nodes("master");
      const present = new Set(masters.map((m) => `${m.options.host}:${m.options.port}`));
      for (const key of silent) if (!present.has(key)) silent.delete(key);
      for (const master of masters) {
        const key = `${master.options.host}:${master.options.port}`;
        master.ping().then(
          () => {
            silent.delete(key);
            update();
          },
          (error: Error) => {
            silent.add(key);
            lastError = `${key}: ${error.message}`;
            update();
          },
        );
      }
    }
    update();
    // Something is down: the slot map may have changed (a replica promoted) without a MOVED yet.
    if (!isUp() && commands.status === "ready") commands.refreshSlotsCache();
    if (!isUp() && Date.now() - warnedAt >= timings.warnIntervalMs) warnUnreachable(true);
  }, timings.probeIntervalMs);
  probe.unref?.();

  return {
    layout: "cluster",
    commands,
    publisher: { publish: (channel, message) => commands.spublish(channel, message) },
    subscriber,
    status: (key) => ((key === undefined ? isUp() : isUpFor(key)) ? "up" : "down"),
    close: async (deadlineMs = timings.commandTimeoutMs) => {
      clearInterval(probe);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), deadlineMs);
      });
      const answered = isUp()
        ? await Promise.race([
            Promise.all(commands.nodes("master").map((m) => m.ping())).then(
              () => "up" as const,
              () => "down" as const,
            ),
            late,
          ])
        : "down";
      if (answered === "up") await Promise.race([Promise.allSettled([commands.quit(), subscriber.close()]), late]);
      clearTimeout(timer);
      commands.disconnect();
      await subscriber.close().catch(() => {});
      return answered === "up" ? [] : answered === "down" ? ["redis down"] : ["redis quit"];
    },
  };
}
