import { Elysia } from "elysia";
import type { Backplane } from "../backplane/backplane";
import type { Config } from "../config";
import type { ConnectionRegistry } from "../connections/registry";
import type { Lifecycle } from "../lifecycle";

export interface HealthDeps {
  config: Readonly<Config>;
  registry: ConnectionRegistry;
  lifecycle: Lifecycle;
  backplane: Backplane;
  /** Whether a Redis URL is configured (the backplane is then Redis). */
  usesRedis: boolean;
  store: "sqlite" | "postgres" | "memory";
  /** With PostgreSQL: its state as the write-behind last saw it. */
  database?: () => "up" | "down";
}

/**
 * `/health` describes the instance; `/health/ready` answers whether it accepts new connections. Both
 * answer 503 while the instance drains, until the process exits.
 */
export function healthRoutes(deps: HealthDeps) {
  const { config, registry, lifecycle, backplane } = deps;

  const redisState = () => (deps.usesRedis ? backplane.status() : "disabled");
  const readiness = (): { ready: boolean; reason?: string } => {
    if (lifecycle.draining) return { ready: false, reason: "draining" };
    if (registry.size >= config.maxConnections) return { ready: false, reason: "at_capacity" };
    if (config.redisRequired && redisState() !== "up") return { ready: false, reason: "redis_down" };
    return { ready: true };
  };

  return new Elysia({ name: "health" })
    .get("/health", ({ set }) => {
      const redis = redisState();
      // A draining instance is on its way out: 503 keeps a load balancer from choosing it.
      if (lifecycle.draining) set.status = 503;
      const status = lifecycle.draining ? "draining" : redis === "down" ? "degraded" : "ok";
      return {
        status,
        instanceId: config.instanceId,
        color: config.color,
        version: config.version,
        uptimeSeconds: Math.round((Date.now() - lifecycle.startedAt) / 1000),
        connections: registry.size,
        maxConnections: config.maxConnections,
        redis,
        store: deps.store,
        // Not part of readiness: while the database is down, messages wait in Redis (see operations.md).
        database: deps.database?.() ?? "disabled",
      };
    })
    .get("/health/ready", ({ set }) => {
      const { ready, reason } = readiness();
      set.status = ready ? 200 : 503;
      return ready
        ? { ready, color: config.color, instanceId: config.instanceId }
        : { ready, reason, color: config.color, instanceId: config.instanceId };
    });
}
