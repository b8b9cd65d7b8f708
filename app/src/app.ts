import { staticPlugin } from "@elysiajs/static";
import { Elysia, ValidationError } from "elysia";
import type { Authenticator } from "./auth/auth";
import type { Backplane } from "./backplane/backplane";
import type { ChatService } from "./chat/service";
import type { Config } from "./config";
import type { ConnectionRegistry } from "./connections/registry";
import { adminRoutes } from "./http/admin";
import { createAdmission } from "./http/admission";
import { ChatSocketData, ChatSocketHandlers } from "./http/chat-socket";
import { jsonError } from "./http/errors";
import { healthRoutes } from "./http/health";
import { metricsRoute } from "./http/metrics";
import type { Lifecycle } from "./lifecycle";
import type { Logger } from "./observability/logger";
import type { Metrics } from "./observability/metrics";
import type { PresenceStore } from "./presence/presence";

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
  /** Where room messages are kept beyond the hot history (reported by /health). */
  store: "sqlite" | "postgres" | "memory";
  /** With PostgreSQL: its state as the write-behind last saw it (reported by /health). */
  database?: () => "up" | "down";
  /** Directory holding the test page and the client bundle. */
  publicDir: string;
  authenticator: Authenticator | undefined;
}

const SECURITY_HEADERS = {
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "content-security-policy":
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
};

/** Builds the Elysia app. It holds no module-level state: two apps can live in one process. */
export async function createApp(deps: AppDeps) {
  const { config, logger, metrics, registry, chat, lifecycle } = deps;
  const admission = createAdmission({ config, registry, lifecycle, metrics, authenticator: deps.authenticator });
  const handlers = new ChatSocketHandlers(chat, {
    config,
    registry,
    lifecycle,
    metrics,
    maxMessageBytes: config.maxMessageBytes,
  });

  const app = new Elysia({
    serve: { reusePort: false, maxRequestBodySize: config.maxRequestBodyBytes },
    websocket: {
      // A backstop only: Bun cuts a frame over this limit without a close frame (1006). Frames over
      // MAX_MESSAGE_BYTES get the documented 1009 from ChatSocketData.message.
      maxPayloadLength: Math.max(4 * config.maxMessageBytes, 65_536),
      // Heartbeats and idle closing are ours (connections/heartbeat.ts) so they carry documented codes.
      idleTimeout: 0,
      sendPings: false,
      // A socket whose send buffer is at the limit when the heartbeat looks is closed with 4008
      // (connections/heartbeat.ts). One that passes it between two looks is cut by Bun at the
      // first frame it would otherwise drop (1006, no close frame): a frame is never dropped while
      // the connection stays open, so the client always learns that it missed something, and
      // resumes. The buffer stays bounded by the limit either way.
      backpressureLimit: config.backpressureLimitBytes,
      closeOnBackpressureLimit: true,
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
    .use(
      adminRoutes({
        adminToken: config.adminToken,
        maxTextLength: config.maxTextLength,
        chat,
        presence: deps.presence,
      }),
    )
    .get("/ws/chat/:connectionId", async ({ request, params, query, server }) => {
      const decision = await admission.admit({ request, params, query, peer: server?.requestIP(request)?.address });
      if (decision instanceof Response) return decision;
      const upgraded = server?.upgrade(request, {
        data: new ChatSocketData(decision, handlers),
        headers: decision.protocol ? { "sec-websocket-protocol": decision.protocol } : undefined,
      });
      if (!upgraded) return jsonError(400, "upgrade_failed", "the WebSocket handshake could not be completed");
      // Bun answers an upgraded request itself; nothing may be returned.
      return undefined as unknown as Response;
    });

  // no-cache: browsers revalidate with the ETag, so a deploy's new page script is picked up at once.
  app.use(
    await staticPlugin({
      assets: deps.publicDir,
      prefix: "/",
      alwaysStatic: true,
      silent: true,
      directive: "no-cache",
      maxAge: null,
    }),
  );
  return app;
}

export type App = Awaited<ReturnType<typeof createApp>>;
