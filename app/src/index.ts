// Composition root: config -> dependencies -> app -> listen -> shutdown hooks.
import { resolvePublicDir } from "./assets";
import { type Config, ConfigError, loadConfig } from "./config";
import { ListenError } from "./listen";
import { createLogger, flushLogger } from "./observability/logger";
import { createRedisClients } from "./redis/clients";
import { createClusterClients } from "./redis/cluster";
import {
  memoryBackends,
  openPostgres,
  type RunningServer,
  redisBackends,
  StoreOpenError,
  sqliteBackends,
  startServer,
} from "./server";

/** Exit codes besides 0 (drained) and 130 (second signal), documented in docs/operations.md. */
const EXIT_CONFIG_ERROR = 2;
const EXIT_CANNOT_LISTEN = 3;
const EXIT_STORE_ERROR = 4;

let config: Readonly<Config>;
try {
  config = loadConfig();
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`config error: ${error.message}\n`);
    process.exit(EXIT_CONFIG_ERROR);
  }
  throw error;
}

const logger = createLogger(config);
const publicDir = await resolvePublicDir();
let server: RunningServer;
try {
  const database = config.databaseUrl ? await openPostgres(config) : undefined;
  server = await startServer({
    config,
    logger,
    publicDir: publicDir.dir,
    backends: (metrics) =>
      config.redisCluster
        ? redisBackends(config, createClusterClients(config.redisCluster, { logger, metrics }), {
            logger,
            metrics,
            database,
          })
        : config.redisUrl
          ? redisBackends(config, createRedisClients(config.redisUrl, { logger, metrics }), {
              logger,
              metrics,
              database,
            })
          : config.store === "sqlite"
            ? sqliteBackends(config, { logger, metrics })
            : memoryBackends(config, { metrics }),
  });
} catch (error) {
  if (error instanceof StoreOpenError) {
    process.stderr.write(`error: ${error.message}\n`);
    publicDir.cleanup();
    process.exit(EXIT_STORE_ERROR);
  }
  if (error instanceof ListenError) {
    process.stderr.write(`error: ${error.message}\n`);
    publicDir.cleanup();
    process.exit(EXIT_CANNOT_LISTEN);
  }
  throw error;
}
logger.info("server listening", {
  port: server.port,
  url: `http://${config.host === "0.0.0.0" ? "localhost" : config.host}:${server.port}/`,
  maxConnections: config.maxConnections,
  redis: config.redisCluster ? "cluster" : server.backends.usesRedis ? "enabled" : "disabled",
  store: server.backends.store,
});

let signals = 0;
const onSignal = async (signal: NodeJS.Signals) => {
  if (++signals > 1) {
    logger.warn("second signal: exiting without draining", { signal });
    publicDir.cleanup();
    process.exit(130);
  }
  logger.info("shutdown requested", { signal });
  try {
    // The listener closes with the process: health checks see 503 `draining` until the very end.
    await server.shutdown({ keepListening: true });
    logger.info("shutdown complete");
  } catch (error) {
    logger.error("shutdown failed", { error: (error as Error).message });
  }
  publicDir.cleanup();
  await flushLogger(logger);
  process.exit(0);
};
process.on("SIGTERM", onSignal);
process.on("SIGINT", onSignal);
process.on("unhandledRejection", (reason) => {
  logger.error("unhandled rejection", { error: reason instanceof Error ? reason.message : String(reason) });
});
process.on("uncaughtException", (error) => {
  logger.error("uncaught exception", { error: error.message, stack: error.stack });
});
