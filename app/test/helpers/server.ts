// Starts a real server instance inside the test process, on a free loopback port.
import { join } from "node:path";
import { loadConfig } from "../../src/config";
import { createLogger } from "../../src/observability/logger";
import { memoryBackends, startServer, type Backends, type RunningServer } from "../../src/server";
import type { Config } from "../../src/config";

export const PUBLIC_DIR = join(import.meta.dir, "..", "..", "public");

export interface TestServer {
  server: RunningServer;
  config: Readonly<Config>;
  port: number;
  httpUrl: string;
  wsUrl(connectionId: string, query?: string): string;
  stop(): Promise<void>;
}

let counter = 0;

/** A unique, valid connectionId for a test. */
export function connId(prefix = "conn") {
  return `${prefix}-${process.pid}-${++counter}-${Math.random().toString(36).slice(2, 8)}`;
}

export async function startTestServer(
  env: Record<string, string> = {},
  backends?: (config: Readonly<Config>) => Backends,
): Promise<TestServer> {
  const config = loadConfig({
    PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: "error",
    INSTANCE_ID: `test-${++counter}`,
    ...env,
  });
  const logger = createLogger(config);
  const server = await startServer({
    config,
    logger,
    backends: backends ? backends(config) : memoryBackends(config),
    publicDir: PUBLIC_DIR,
  });
  const port = server.port;
  return {
    server,
    config,
    port,
    httpUrl: `http://127.0.0.1:${port}`,
    wsUrl: (connectionId, query) => `ws://127.0.0.1:${port}/ws/chat/${connectionId}${query ? `?${query}` : ""}`,
    stop: () => server.shutdown(),
  };
}
