// Several server instances in the test process sharing one Redis (or one Redis Cluster), each with
// its own connections.
import { createLogger } from "../../src/observability/logger";
import { createRedisClients } from "../../src/redis/clients";
import { createClusterClients } from "../../src/redis/cluster";
import { redisBackends } from "../../src/server";
import type { TestRedis } from "./redis";
import type { TestCluster } from "./redis-cluster";
import { startTestServer, type TestServer } from "./server";

/** Starts an instance on a free port backed by Redis under `prefix`. */
export function startRedisInstance(
  redis: TestRedis,
  prefix: string,
  env: Record<string, string> = {},
): Promise<TestServer> {
  return startTestServer({ REDIS_URL: redis.url, REDIS_KEY_PREFIX: prefix, ...env }, (config, metrics) => {
    const logger = createLogger(config);
    return redisBackends(config, createRedisClients(config.redisUrl, { logger, metrics }), { logger, metrics });
  });
}

/** Starts an instance on a free port backed by a Redis Cluster under `prefix`. */
export function startClusterInstance(
  cluster: TestCluster,
  prefix: string,
  env: Record<string, string> = {},
): Promise<TestServer> {
  return startTestServer(
    { REDIS_CLUSTER_NODES: cluster.seeds, REDIS_KEY_PREFIX: prefix, ...env },
    (config, metrics) => {
      const logger = createLogger(config);
      return redisBackends(config, createClusterClients(config.redisCluster!, { logger, metrics }), {
        logger,
        metrics,
      });
    },
  );
}

/** Resolves once the instance reports Redis up in /health. */
export async function waitRedisUp(instance: TestServer, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const health = (await (await fetch(`${instance.httpUrl}/health`)).json()) as { redis: string };
    if (health.redis === "up") return;
    if (Date.now() > deadline) throw new Error(`instance ${instance.config.instanceId} never saw Redis up`);
    await Bun.sleep(25);
  }
}
