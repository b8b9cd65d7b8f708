import { createApp } from "./app";
import type { Backplane } from "./backplane/backplane";
import { MemoryBackplane } from "./backplane/memory";
import { ChatService } from "./chat/service";
import type { Config } from "./config";
import { startHeartbeat } from "./connections/heartbeat";
import { ConnectionRegistry } from "./connections/registry";
import type { DedupStore } from "./dedup/dedup";
import { MemoryDedupStore } from "./dedup/memory";
import type { HistoryStore } from "./history/history";
import { MemoryHistoryStore } from "./history/memory";
import { createLifecycle } from "./lifecycle";
import type { Logger } from "./observability/logger";
import { createMetrics } from "./observability/metrics";
import type { PresenceStore } from "./presence/presence";
import { MemoryPresenceStore } from "./presence/memory";
import { RoomManager, type LocalPublisher } from "./rooms/rooms";
import { drainConnections } from "./shutdown";
import type { SessionStore } from "./sessions/sessions";
import { MemorySessionStore } from "./sessions/memory";

/** The swappable backends. Memory ones are the defaults; the composition root may pass Redis ones. */
export interface Backends {
  backplane: Backplane;
  history: HistoryStore;
  presence: PresenceStore;
  sessions: SessionStore;
  dedup: DedupStore;
  usesRedis: boolean;
}

export function memoryBackends(config: Readonly<Config>): Backends {
  return {
    backplane: new MemoryBackplane(config.instanceId),
    history: new MemoryHistoryStore({ historySize: config.historySize, ttlSeconds: config.historyTtlSeconds }),
    presence: new MemoryPresenceStore(),
    sessions: new MemorySessionStore(),
    dedup: new MemoryDedupStore(config.dedupWindowSeconds),
    usesRedis: false,
  };
}

/**
 * Wires one server instance: dependencies, app, listen, heartbeat. `shutdown()` runs the drain
 * sequence and releases everything; it does not exit the process.
 */
export async function startServer(options: { config: Readonly<Config>; logger: Logger; backends: Backends; publicDir: string }) {
  const { config, logger, backends } = options;
  const metrics = createMetrics(config);
  const registry = new ConnectionRegistry();
  const lifecycle = createLifecycle();
  const rooms = new RoomManager(backends.backplane);

  // Bun's server exists only after listen; the chat publishes through this late-bound view of it.
  let server: { publish(topic: string, data: string): number; subscriberCount(topic: string): number } | undefined;
  const local: LocalPublisher = {
    publish: (topic, frame) => void server?.publish(topic, frame),
    subscriberCount: (topic) => server?.subscriberCount(topic) ?? 0,
  };

  const chat = new ChatService({ config, registry, rooms, local, metrics, logger, ...backends });
  const app = await createApp({
    config,
    logger,
    metrics,
    registry,
    chat,
    presence: backends.presence,
    backplane: backends.backplane,
    lifecycle,
    usesRedis: backends.usesRedis,
    publicDir: options.publicDir,
  });
  app.listen({ port: config.port, hostname: config.host });
  server = app.server!;
  const heartbeat = startHeartbeat(registry, {
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    pongTimeoutMs: config.pongTimeoutMs,
    connectionTimeoutMs: config.connectionTimeoutMs,
    onSent: (n) => metrics.countOut("heartbeat", n),
  });

  let stopping: Promise<void> | undefined;
  const shutdown = () =>
    (stopping ??= (async () => {
      await drainConnections({ registry, lifecycle, logger, metrics }, config);
      heartbeat.stop();
      rooms.close();
      // Bun can keep counting a socket whose client closed it while the drain closed it too; its
      // stop() then never resolves. Every connection is released by now, so give it a bound.
      const stopped = await Promise.race([app.stop(true).then(() => true), Bun.sleep(2000).then(() => false)]);
      if (!stopped) logger.warn("listener stop timed out; continuing shutdown");
      await Promise.allSettled([
        backends.backplane.close(),
        backends.history.close(),
        backends.presence.close(),
        backends.sessions.close(),
        backends.dedup.close(),
      ]);
    })());

  return { app, port: app.server!.port, config, chat, registry, metrics, lifecycle, shutdown };
}

export type RunningServer = Awaited<ReturnType<typeof startServer>>;
