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
import { createAdmission } from "./http/admission";
import type { Authenticator } from "./auth/auth";
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
  authenticator: Authenticator | undefined;
}

/** Per-socket data: the chat connection, attached when the socket opens. */
interface SocketData {
  connection?: Connection;
}

const SECURITY_HEADERS = {
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "content-security-policy": "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
};

/** Builds the Elysia app. It holds no module-level state: two apps can live in one process. */
export async function createApp(deps: AppDeps) {
  const { config, logger, metrics, registry, chat, lifecycle } = deps;
  const admission = createAdmission({ config, registry, lifecycle, metrics, authenticator: deps.authenticator });

  const app = new Elysia({
    serve: { reusePort: false, maxRequestBodySize: config.maxRequestBodyBytes },
    websocket: {
      // A backstop only: Bun cuts a frame over this limit without a close frame (1006). Frames over
      // MAX_MESSAGE_BYTES get the documented 1009 from guardFrameSize.
      maxPayloadLength: Math.max(4 * config.maxMessageBytes, 65_536),
      // Heartbeats and idle closing are ours (connections/heartbeat.ts) so they carry documented codes.
      idleTimeout: 0,
      sendPings: false,
      // Past this Bun drops frames for the socket; the heartbeat tick then closes it with 4008.
      backpressureLimit: config.backpressureLimitBytes,
      closeOnBackpressureLimit: false,
      perMessageDeflate: false,
    },
  })
    // Every HTTP answer carries these, error bodies and the test page included.
    .onRequest(({ set }) => {
      Object.assign(set.headers, SECURITY_HEADERS);
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
    .use(adminRoutes({ adminToken: config.adminToken, maxTextLength: config.maxTextLength, chat, presence: deps.presence }))
    // Reached only without an Upgrade header: upgrades are routed to the WebSocket handler below.
    .get("/ws/chat/:connectionId", () => jsonError(400, "upgrade_required", "this route only accepts WebSocket upgrades"))
    .ws("/ws/chat/:connectionId", {
      async beforeHandle({ params, query, request, server, set }) {
        const decision = await admission.admit({ request, params, query, peer: server?.requestIP(request)?.address });
        if (decision instanceof Response) return decision;
        if (decision.protocol) set.headers["sec-websocket-protocol"] = decision.protocol;
      },
      open(ws) {
        const data = ws.data as unknown as SocketData & { request: Request };
        const admitted = admission.accepted(data.request);
        if (!admitted || lifecycle.draining || registry.size >= config.maxConnections) {
          // Upgrades raced past the gate: say so with a code the client retries after.
          ws.raw.close(CloseCode.OverCapacity, "over capacity");
          return;
        }
        data.connection = chat.open(ws.raw, admitted.connectionId, admitted.identity);
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

  // no-cache: browsers revalidate with the ETag, so a deploy's new page script is picked up at once.
  app.use(await staticPlugin({ assets: deps.publicDir, prefix: "/", alwaysStatic: true, silent: true, directive: "no-cache", maxAge: null }));
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
