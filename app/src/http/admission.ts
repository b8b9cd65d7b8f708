import { AuthError, type Authenticator, chosenProtocol, type Identity, tokenFromRequest } from "../auth/auth";
import type { Config } from "../config";
import type { ConnectionRegistry } from "../connections/registry";
import type { Lifecycle } from "../lifecycle";
import { KeyedLimiter } from "../limits/token-bucket";
import type { Metrics } from "../observability/metrics";
import { CONNECTION_ID_PATTERN } from "../protocol/client-frames";
import { clientIp } from "./client-ip";
import { jsonError } from "./errors";

/** What an accepted upgrade carries to the socket's open handler. */
export interface Admission {
  identity: Identity;
  connectionId: string;
  ip: string;
  /** Subprotocol to answer with, when the client offered some. */
  protocol: string | undefined;
  /** The client asked for batched frames (`?batch=1`). */
  batched: boolean;
}

export interface UpgradeRequest {
  request: Request;
  params: { connectionId: string };
  query: Record<string, string | undefined>;
  /** The peer's address as the socket sees it. */
  peer: string | undefined;
}

const USER_PATTERN = /^.{1,64}$/su;
const NO_ROLES: readonly string[] = Object.freeze([]);
/** Seconds a client refused for capacity should wait before trying again. */
const CAPACITY_RETRY_SECONDS = "5";

/**
 * Decides whether an upgrade may proceed, cheapest checks first: shape, origin, state, capacity,
 * the per-IP rate, then the token and the per-user limit. A refusal is an HTTP response with a JSON
 * body; an acceptance is remembered per request so the open handler can read who connected.
 */
export function createAdmission(deps: {
  config: Readonly<Config>;
  registry: ConnectionRegistry;
  lifecycle: Lifecycle;
  metrics: Metrics;
  authenticator: Authenticator | undefined;
}) {
  const { config, registry, lifecycle, metrics, authenticator } = deps;
  const ipLimiter = new KeyedLimiter(config.connectRatePerIp, config.connectBurstPerIp);
  const admitted = new WeakMap<Request, Promise<Admission | Response>>();
  const accepted = new WeakMap<Request, Admission>();
  const allowedOrigins = new Set(config.allowedOrigins);

  const refuse = (
    reason: string,
    status: number,
    code: string,
    message: string,
    headers: Record<string, string> = {},
  ) => {
    metrics.rejected.labels(reason).inc();
    return jsonError(status, code, message, headers);
  };

  async function decide(up: UpgradeRequest): Promise<Admission | Response> {
    const { request, params, query } = up;
    if (!CONNECTION_ID_PATTERN.test(params.connectionId)) {
      return refuse(
        "invalid_connection_id",
        400,
        "invalid_connection_id",
        "connectionId must be 8-64 characters of A-Z a-z 0-9 _ -",
      );
    }
    if (query.user && !USER_PATTERN.test(query.user)) {
      return refuse("invalid_user", 400, "invalid_user", "user must be 1-64 characters");
    }
    if (query.batch !== undefined && query.batch !== "0" && query.batch !== "1") {
      return refuse("invalid_batch", 400, "invalid_batch", "batch must be 0 or 1");
    }
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return refuse("not_websocket", 400, "upgrade_required", "this route only accepts WebSocket upgrades");
    }
    const origin = request.headers.get("origin");
    // Browsers always send Origin; a missing one is a non-browser client, which CSWSH cannot abuse.
    if (allowedOrigins.size > 0 && origin !== null && !allowedOrigins.has(origin) && !allowedOrigins.has("*")) {
      return refuse("origin", 403, "forbidden_origin", "this origin may not open chat connections");
    }
    if (lifecycle.draining) {
      return refuse("draining", 503, "draining", "this instance is shutting down; reconnect to another", {
        "retry-after": "1",
      });
    }
    if (registry.size >= config.maxConnections) {
      return refuse("capacity", 503, "over_capacity", "this instance is at its connection limit", {
        "retry-after": CAPACITY_RETRY_SECONDS,
      });
    }
    const ip = clientIp(up.peer, request.headers.get("x-forwarded-for"), config.trustedProxies);
    const waitMs = ipLimiter.take(ip);
    if (waitMs > 0) {
      metrics.rateLimited.labels("ip").inc();
      return refuse("rate_limited", 429, "rate_limited", "too many connection attempts from this address", {
        "retry-after": String(Math.ceil(waitMs / 1000)),
      });
    }

    let identity: Identity;
    const token = tokenFromRequest(request, query);
    if (authenticator && token) {
      try {
        identity = await authenticator.verify(token);
      } catch (error) {
        const code = error instanceof AuthError ? error.code : "invalid_token";
        return refuse("unauthorized", 401, code, (error as Error).message, { "www-authenticate": "Bearer" });
      }
    } else if (config.authRequired) {
      return refuse(
        "unauthorized",
        401,
        "missing_token",
        "a token is required: ?token=, Sec-WebSocket-Protocol bearer.<token>, or the chat_token cookie",
        {
          "www-authenticate": "Bearer",
        },
      );
    } else {
      identity = { userId: query.user || params.connectionId, roles: NO_ROLES, expiresAt: undefined };
    }

    // A connectionId belongs to the user who opened it: another user naming it is refused rather
    // than allowed to close the open connection (only the same user's newer socket replaces it).
    const holder = registry.get(params.connectionId);
    if (holder && holder.userId !== identity.userId) {
      return refuse(
        "connection_id_in_use",
        409,
        "connection_id_in_use",
        "this connectionId is open for another user; connect with a new one",
      );
    }
    if (registry.countForUser(identity.userId) >= config.maxConnectionsPerUser) {
      metrics.rateLimited.labels("user").inc();
      return refuse(
        "too_many_connections",
        429,
        "too_many_connections",
        `a user may hold at most ${config.maxConnectionsPerUser} connections`,
        {
          "retry-after": "5",
        },
      );
    }
    return {
      identity,
      connectionId: params.connectionId,
      ip,
      protocol: chosenProtocol(request),
      batched: query.batch === "1",
    };
  }

  return {
    /** Elysia runs a ws route's beforeHandle twice; the decision is made once per request. */
    admit(up: UpgradeRequest): Promise<Admission | Response> {
      let decision = admitted.get(up.request);
      if (!decision) {
        decision = decide(up).then((d) => {
          if (!(d instanceof Response)) accepted.set(up.request, d);
          return d;
        });
        admitted.set(up.request, decision);
      }
      return decision;
    },
    /** The admission of a request whose socket just opened (settled before the upgrade). */
    accepted(request: Request): Admission | undefined {
      return accepted.get(request);
    },
  };
}
