import { createApp } from "./app";
import { createAuthenticator } from "./auth/auth";
import type { Backends } from "./backends";
import { ChatService } from "./chat/service";
import type { Config } from "./config";
import { FrameBatcher } from "./connections/batching";
import { startHeartbeat } from "./connections/heartbeat";
import { ConnectionRegistry } from "./connections/registry";
import { createLifecycle } from "./lifecycle";
import { ListenError, listenFailureReason } from "./listen";
import type { Logger } from "./observability/logger";
import { createMetrics, type Metrics } from "./observability/metrics";
import { RoomManager } from "./rooms/rooms";
import { drainConnections } from "./shutdown";

export {
  type Backends,
  memoryBackends,
  openPostgres,
  redisBackends,
  StoreOpenError,
  sqliteBackends,
} from "./backends";

/**
 * Wires one server instance: dependencies, app, listen, heartbeat. `shutdown()` runs the drain
 * sequence, stops the listener and closes the backends; it does not exit the process. With
 * `keepListening` the listener stays open, so health checks get 503 `draining` rather than a refused
 * connection until the process exits.
 */
export async function startServer(options: {
  config: Readonly<Config>;
  logger: Logger;
  /** Builds the backends; handed the metrics so Redis drivers can count their errors. */
  backends: (metrics: Metrics) => Backends;
  publicDir: string;
}) {
  const { config, logger } = options;
  const metrics = createMetrics(config);
  const backends = options.backends(metrics);
  const registry = new ConnectionRegistry();
  const lifecycle = createLifecycle();

  // Bun's server exists only after listen; the chat publishes through this late-bound view of it.
  let server: { publish(topic: string, data: string): number; subscriberCount(topic: string): number } | undefined;
  const local = new FrameBatcher(
    {
      publish: (topic, frame) => server?.publish(topic, frame),
      subscriberCount: (topic) => server?.subscriberCount(topic) ?? 0,
    },
    { maxFrames: config.batchMaxFrames, maxBytes: config.batchMaxBytes },
  );
  const rooms = new RoomManager(backends.backplane, local, 5000, (topic) => chat.released(topic));

  const authenticator = createAuthenticator(config);
  const chat = new ChatService({ config, registry, rooms, local, metrics, logger, authenticator, ...backends });
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
    store: backends.store,
    database: backends.database,
    publicDir: options.publicDir,
    authenticator,
  });
  try {
    app.listen({ port: config.port, hostname: config.host });
  } catch (error) {
    throw new ListenError(config.host, config.port, await listenFailureReason(config.host, config.port, error));
  }
  server = app.server!;
  const heartbeat = startHeartbeat(registry, {
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    pongTimeoutMs: config.pongTimeoutMs,
    connectionTimeoutMs: config.connectionTimeoutMs,
    backpressureLimitBytes: config.backpressureLimitBytes,
    onSlowConsumer: () => metrics.slowConsumers.inc(),
    onSent: (n) => metrics.countOut("heartbeat", n),
  });

  // Bun 1.3's stop() never settles once any WebSocket was closed from the server side, as every drain
  // does (oven-sh/bun#36223: that close skips the decrement of the server's open-socket count). The
  // listener and the sockets close at the call, so the promise is left unawaited.
  const stopListening = () => void app.server?.stop(true);

  let stopping: Promise<void> | undefined;
  const shutdown = (options: { keepListening?: boolean } = {}) =>
    (stopping ??= (async () => {
      await drainConnections({ registry, lifecycle, logger, metrics }, config);
      heartbeat.stop();
      rooms.close();
      if (!options.keepListening) stopListening();
      await backends.close();
    })());

  return { app, port: app.server!.port!, config, chat, registry, metrics, lifecycle, backends, shutdown };
}

export type RunningServer = Awaited<ReturnType<typeof startServer>>;
