// Starts a real server instance inside the test process, on a free loopback port.
import { join } from "node:path";
import type { Config } from "../../src/config";
import { loadConfig } from "../../src/config";
import { createLogger } from "../../src/observability/logger";
import type { Metrics } from "../../src/observability/metrics";
import { type Backends, memoryBackends, type RunningServer, startServer } from "../../src/server";
import { TestClient } from "./client";
import { waitFor } from "./wait";

export const PUBLIC_DIR = join(import.meta.dir, "..", "..", "public");

export interface TestServer {
  server: RunningServer;
  config: Readonly<Config>;
  port: number;
  httpUrl: string;
  wsUrl(connectionId: string, query?: string): string;
  /** Connects a client that `stop()` closes if the test left it open. */
  connect(connectionId?: string, query?: string, options?: { waitEstablished?: boolean }): Promise<TestClient>;
  /** Closes the clients still open, waits until the server has released them, then drains. */
  stop(): Promise<void>;
}

let counter = 0;

/**
 * Rate limits lifted: every test talks from one loopback address at test speed. The tests of the
 * limits themselves set these variables again.
 */
export const UNLIMITED: Record<string, string> = {
  CONNECT_RATE_PER_IP: "100000",
  CONNECT_BURST_PER_IP: "100000",
  MAX_CONNECTIONS_PER_USER: "100000",
  FRAME_RATE: "100000",
  FRAME_BURST: "100000",
};

/** A unique, valid connectionId for a test. */
export function connId(prefix = "conn") {
  return `${prefix}-${process.pid}-${++counter}-${Math.random().toString(36).slice(2, 8)}`;
}

export async function startTestServer(
  env: Record<string, string> = {},
  backends?: (config: Readonly<Config>, metrics: Metrics) => Backends,
): Promise<TestServer> {
  const config = loadConfig({
    PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: "error",
    INSTANCE_ID: `test-${++counter}`,
    ...UNLIMITED,
    ...env,
  });
  const logger = createLogger(config);
  const server = await startServer({
    config,
    logger,
    backends: (metrics) => (backends ? backends(config, metrics) : memoryBackends(config, { metrics })),
    publicDir: PUBLIC_DIR,
  });
  const port = server.port!;
  const wsUrl = (connectionId: string, query?: string) =>
    `ws://127.0.0.1:${port}/ws/chat/${connectionId}${query ? `?${query}` : ""}`;
  const clients = new Set<TestClient>();
  return {
    server,
    config,
    port,
    httpUrl: `http://127.0.0.1:${port}`,
    wsUrl,
    async connect(connectionId = connId(), query, options) {
      const client = await TestClient.connect(wsUrl(connectionId, query), options);
      clients.add(client);
      return client;
    },
    async stop() {
      await Promise.all([...clients].map((c) => c.close()));
      // A socket the client closed while the drain also closes it keeps Bun's listener from stopping
      // (see server.ts), so let the server see every client close first.
      await waitFor(() => server.registry.size === 0, { timeoutMs: 2000, what: "connections released" }).catch(
        () => {},
      );
      await server.shutdown();
    },
  };
}
