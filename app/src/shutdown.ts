import { planGoodbyes } from "./connections/drain-pacing";
import type { ConnectionRegistry } from "./connections/registry";
import type { Lifecycle } from "./lifecycle";
import type { Logger } from "./observability/logger";
import type { Metrics } from "./observability/metrics";
import { CloseCode } from "./protocol/codes";
import { frames } from "./protocol/server-frames";

export interface DrainOptions {
  drainTimeoutMs: number;
  drainJitterMs: number;
  /** The per-address upgrade limit the clients come back through: their delays are paced to it. */
  connectRatePerIp?: number;
  connectBurstPerIp?: number;
  random?: () => number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The drain sequence, in a fixed order: flag (readiness 503, upgrades refused), tell every client
 * `goodbye` with a jittered retryAfterMs, close them with 1012 in batches over the first half of
 * DRAIN_TIMEOUT, wait for the closes to finish, then terminate whatever is left at the deadline.
 * Resolves with the number of connections that had to be terminated.
 */
export async function drainConnections(
  deps: { registry: ConnectionRegistry; lifecycle: Lifecycle; logger: Logger; metrics: Metrics },
  options: DrainOptions,
): Promise<number> {
  const { registry, lifecycle, logger, metrics } = deps;
  const random = options.random ?? Math.random;
  const started = Date.now();
  const deadline = started + options.drainTimeoutMs;
  lifecycle.draining = true;
  metrics.draining.set(1);

  const { goodbyes, compressed } = planGoodbyes(
    [...registry.values()].filter((c) => !c.closing),
    options,
    random,
  );
  const connections = goodbyes.map((g) => g.connection);
  logger.info("drain started", { connections: connections.length, drainTimeoutMs: options.drainTimeoutMs, compressed });
  for (const { connection, retryAfterMs } of goodbyes) connection.send(frames.goodbye("shutdown", true, retryAfterMs));
  metrics.countOut("goodbye", connections.length);

  const batches = Math.min(10, connections.length);
  const batchSize = Math.ceil(connections.length / Math.max(1, batches));
  const pause = batches > 1 ? Math.min(1000, Math.floor(options.drainTimeoutMs / 2 / batches)) : 0;
  for (let i = 0; i < connections.length; i += batchSize) {
    for (const connection of connections.slice(i, i + batchSize))
      connection.close(CloseCode.ServiceRestart, "server shutting down");
    if (pause > 0 && i + batchSize < connections.length) await sleep(pause);
  }

  while (registry.size > 0 && Date.now() < deadline) await sleep(25);
  let terminated = 0;
  for (const connection of registry.values()) {
    terminated++;
    (connection.socket as { terminate?: () => void }).terminate?.();
  }
  logger.info("drain finished", { durationMs: Date.now() - started, terminated });
  return terminated;
}
