import { createRemoteJWKSet, errors, type JWTPayload, type JWTVerifyGetKey, jwtVerify } from "jose";
import type { Config } from "../config";

/** Who a connection belongs to, from its token (or, without auth, from the `user` parameter). */
export interface Identity {
  userId: string;
  roles: readonly string[];
  /** Token expiry in ms since the epoch; the connection is closed with 4401 when it passes. */
  expiresAt: number | undefined;
}

export class AuthError extends Error {
  constructor(
    readonly code: "missing_token" | "invalid_token" | "token_expired",
    message: string,
  ) {
    super(message);
  }
}

/** Checks connect tokens: HS256 with JWT_SECRET, or the keys of JWT_JWKS_URL. */
export interface Authenticator {
  verify(token: string): Promise<Identity>;
}

export function createAuthenticator(
  config: Pick<Config, "jwtSecret" | "jwtJwksUrl" | "jwtIssuer" | "jwtAudience">,
): Authenticator | undefined {
  let key: Uint8Array | JWTVerifyGetKey;
  let algorithms: string[];
  if (config.jwtJwksUrl) {
    key = createRemoteJWKSet(new URL(config.jwtJwksUrl), { cooldownDuration: 30_000, timeoutDuration: 5000 });
    algorithms = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"];
  } else if (config.jwtSecret) {
    key = new TextEncoder().encode(config.jwtSecret);
    algorithms = ["HS256"];
  } else {
    return undefined;
  }
  const options = {
    algorithms,
    issuer: config.jwtIssuer || undefined,
    audience: config.jwtAudience || undefined,
  };
  return {
    async verify(token: string) {
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, key as Uint8Array, options));
      } catch (error) {
        if (error instanceof errors.JWTExpired) throw new AuthError("token_expired", "the token has expired");
        throw new AuthError("invalid_token", "the token is not valid");
      }
      if (typeof payload.sub !== "string" || payload.sub.length < 1 || payload.sub.length > 64) {
        throw new AuthError("invalid_token", "the token needs a `sub` of 1-64 characters");
      }
      return { userId: payload.sub, roles: rolesOf(payload), expiresAt: payload.exp ? payload.exp * 1000 : undefined };
    },
  };
}

function rolesOf(payload: JWTPayload): string[] {
  const roles = payload.roles ?? payload.role;
  if (typeof roles === "string") return [roles];
  return Array.isArray(roles) ? roles.filter((r): r is string => typeof r === "string") : [];
}

/** The subprotocol a browser offers to carry its token: `bearer.<jwt>`, next to `chat.v1`. */
const BEARER_PROTOCOL = "bearer.";
export const CHAT_PROTOCOL = "chat.v1";
export const TOKEN_COOKIE = "chat_token";

/**
 * Finds the connect token in, by order: the `token` query parameter, a `bearer.<jwt>` entry of
 * Sec-WebSocket-Protocol (for browsers, which cannot set headers), or the `chat_token` cookie.
 */
export function tokenFromRequest(request: Request, query: Record<string, string | undefined>): string | undefined {
  if (query.token) return query.token;
  const protocols = request.headers.get("sec-websocket-protocol");
  if (protocols) {
    for (const p of protocols.split(",")) {
      const value = p.trim();
      if (value.startsWith(BEARER_PROTOCOL)) return value.slice(BEARER_PROTOCOL.length);
    }
  }
  const cookie = request.headers.get("cookie");
  if (cookie) {
    for (const part of cookie.split(";")) {
      const [name, ...rest] = part.trim().split("=");
      if (name === TOKEN_COOKIE) return decodeCookie(rest.join("="));
    }
  }
  return undefined;
}

/**
 * A malformed percent-encoding (`%`, `%zz`) is kept as it came: it is then no valid token (401
 * `invalid_token` with auth configured) and ignored without auth, never a failed request.
 */
function decodeCookie(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/**
 * The subprotocol to answer with, whenever the client offered any: `chat.v1` if offered, else the
 * first offered entry that is not a token. Never a `bearer.<jwt>` entry, which would send the token
 * back in the response; a client that offered nothing else gets `chat.v1`. The answer must always
 * be set: without one, Bun answers with the first protocol offered (oven-sh/bun#18243).
 */
export function chosenProtocol(request: Request): string | undefined {
  const offered = request.headers.get("sec-websocket-protocol");
  if (!offered) return undefined;
  const list = offered
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p !== "" && !p.startsWith(BEARER_PROTOCOL));
  return list.includes(CHAT_PROTOCOL) ? CHAT_PROTOCOL : (list[0] ?? CHAT_PROTOCOL);
}

/** Rooms named `<role>:...` for a restricted role need that role. */
export function mayEnter(room: string, roles: readonly string[], restrictedPrefixes: readonly string[]): boolean {
  const colon = room.indexOf(":");
  if (colon < 0) return true;
  const prefix = room.slice(0, colon);
  return !restrictedPrefixes.includes(prefix) || roles.includes(prefix);
}
