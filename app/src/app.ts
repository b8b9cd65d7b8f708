import { Elysia, ValidationError } from "elysia";
import { staticPlugin } from "@elysiajs/static";
import type { Backplane } from "./backplane/backplane";
import type { ChatService } from "./chat/service";
import type { Config } from "./config";
import type { Connection } from "./connections/connection";
import type { ConnectionRegistry } from "./connections/registry";
import { adminRoutes } from "./http/admin";
import { jsonError } from "./http/errors";
import { healthRoutes } from "./http/health";
import { metricsRoute } from "./http/metrics";
import type { Lifecycle } from "./lifecycle";
import type { Logger } from "./observability/logger";
import type { Metrics } from "./observability/metrics";
import type { PresenceStore } from "./presence/presence";
import { CONNECTION_ID_PATTERN } from "./protocol/client-frames";
import { CloseCode } from "./protocol/codes";

export interface AppDeps {
  config: Readonly<Config>;
  logger: Logger;
  metrics: Metrics;
  registry: ConnectionRegistry;
  chat: ChatService;
  presence: PresenceStore;
  backplane: Backplane;
  lifecycle: Lifecycle;
  usesRedis: boolean;
  /** Directory holding the test page and the client bundle. */
  publicDir: string;
}

/** Per-socket data: the chat connection, attached when the socket opens. */
interface SocketData {
  connection?: Connection;
}

const USER_PATTERN = /^.{1,64}$/su;

/** Seconds a client refused for capacity should wait before trying again. */
const RETRY_AFTER_SECONDS = "5";

/** Builds the Elysia app. It holds no module-level state: two apps can live in one process. */
export async function createApp(deps: AppDeps) {
  const { config, logger, metrics, registry, chat, lifecycle } = deps;

  const app = new Elysia({
    serve: { reusePort: false },
    websocket: {
      // A backstop only: Bun cuts a frame over this limit without a close frame (1006). Frames over
      // MAX_MESSAGE_BYTES get the documented 1009 from guardFrameSize.
      maxPayloadLength: Math.max(4 * config.maxMessageBytes, 65_536),
      // Heartbeats and idle closing are ours (connections/heartbeat.ts) so they carry documented codes.
      idleTimeout: 0,
      sendPings: false,
      backpressureLimit: 1024 * 1024,
      closeOnBackpressureLimit: false,
      perMessageDeflate: false,
    },
  })
    .onError(({ code, error, set }) => {
      if (code === "NOT_FOUND") return jsonError(404, "not_found", "no such route");
      if (code === "VALIDATION" || error instanceof ValidationError) {
        return jsonError(400, "invalid_request", "the request does not match the expected shape");
      }
      if (code === "PARSE") return jsonError(400, "invalid_body", "the request body could not be parsed");
      logger.error("http request failed", { error: (error as Error)?.message ?? String(error) });
      set.status = 500;
      return jsonError(500, "internal_error", "the server failed to handle the request");
    })
    .use(healthRoutes(deps))
    .use(metricsRoute(metrics, config.metricsToken))
    .use(adminRoutes({ adminToken: config.adminToken, chat, presence: deps.presence }))
    .ws("/ws/chat/:connectionId", {
      beforeHandle({ params, query, request }) {
        if (!CONNECTION_ID_PATTERN.test(params.connectionId)) {
          metrics.rejected.labels("invalid_connection_id").inc();
          return jsonError(400, "invalid_connection_id", "connectionId must be 8-64 characters of A-Z a-z 0-9 _ -");
        }
        if (query.user !== undefined && !USER_PATTERN.test(query.user)) {
          metrics.rejected.labels("invalid_user").inc();
          return jsonError(400, "invalid_user", "user must be 1-64 characters");
        }
        if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
          return jsonError(400, "upgrade_required", "this route only accepts WebSocket upgrades");
        }
        if (lifecycle.draining) {
          metrics.rejected.labels("draining").inc();
          return jsonError(503, "draining", "this instance is shutting down; reconnect to another", { "retry-after": "1" });
        }
        if (registry.size >= config.maxConnections) {
          metrics.rejected.labels("capacity").inc();
          return jsonError(503, "over_capacity", "this instance is at its connection limit", { "retry-after": RETRY_AFTER_SECONDS });
        }
      },
      open(ws) {
        const data = ws.data as unknown as SocketData & { params: { connectionId: string }; query: { user?: string } };
        if (lifecycle.draining || registry.size >= config.maxConnections) {
          // Upgrades raced past the gate: say so with a code the client retries after.
          ws.raw.close(CloseCode.OverCapacity, "over capacity");
          return;
        }
        const userId = data.query.user || data.params.connectionId;
        data.connection = chat.open(ws.raw, data.params.connectionId, userId);
        guardFrameSize(ws.raw, config.maxMessageBytes, data.connection);
      },
      message(ws, message) {
        const connection = (ws.data as unknown as SocketData).connection;
        if (connection) return chat.frame(connection, message);
      },
      // Elysia hands pong the raw socket; its `data` is the same object as in the other handlers.
      pong(ws) {
        const connection = (ws.data as unknown as SocketData).connection;
        if (connection) chat.pong(connection);
      },
      close(ws, code) {
        const data = ws.data as unknown as SocketData;
        const connection = data.connection;
        if (!connection) {
          metrics.disconnects.labels(String(code)).inc();
          return;
        }
        data.connection = undefined;
        return chat.close(connection, connection.closeCode ?? code);
      },
    });

  app.use(await staticPlugin({ assets: deps.publicDir, prefix: "/", alwaysStatic: true, silent: true }));
  return app;
}

/**
 * Closes with 1009 on a frame over MAX_MESSAGE_BYTES, measured on the raw frame before Elysia parses
 * it. Elysia hands each socket's frames to the `message` function in the socket's data; that function
 * is wrapped here. Bun's own payload limit cannot do this: it drops the TCP connection instead.
 */
function guardFrameSize(raw: { data: unknown }, maxBytes: number, connection: Connection) {
  const data = raw.data as { message?: (ws: unknown, message: string | Uint8Array) => unknown };
  const handle = data.message;
  if (typeof handle !== "function") return;
  data.message = (ws, message) => {
    const size = typeof message === "string" ? Buffer.byteLength(message) : message.byteLength;
    if (size > maxBytes) return connection.close(CloseCode.TooLarge, "frame larger than MAX_MESSAGE_BYTES");
    return handle(ws, message);
  };
}

export type App = Awaited<ReturnType<typeof createApp>>;
