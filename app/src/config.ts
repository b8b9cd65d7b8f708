// The only reader of process.env. Every variable is declared once in VARIABLES, parsed and
// validated in one pass, and the result is frozen: nothing else in the server reads the environment.

import { isIP } from "node:net";
import { isProxyEntry } from "./http/client-ip";
import { type ClusterTarget, parseClusterNodes, redactEntry } from "./redis/cluster-nodes";

export type Color = "blue" | "green" | "none";

export interface Config {
  port: number;
  host: string;
  maxConnections: number;
  heartbeatIntervalMs: number;
  pongTimeoutMs: number;
  connectionTimeoutMs: number;
  maxTextLength: number;
  maxMessageBytes: number;
  historySize: number;
  historyMaxBytes: number;
  historyTtlSeconds: number;
  sessionTtlSeconds: number;
  dedupWindowSeconds: number;
  presenceTtlSeconds: number;
  drainTimeoutMs: number;
  drainJitterMs: number;
  logLevel: "error" | "warn" | "info" | "http" | "verbose" | "debug" | "silly";
  logDir: string;
  color: Color;
  instanceId: string;
  metricsToken: string;
  adminToken: string;
  redisUrl: string;
  /** Seed nodes of a Redis Cluster (REDIS_CLUSTER_NODES); undefined when not set. */
  redisCluster: ClusterTarget | undefined;
  redisRequired: boolean;
  redisKeyPrefix: string;
  store: "sqlite" | "memory";
  dataDir: string;
  /** SQLITE_SYNCHRONOUS: when a commit of the SQLite store counts as done (see SqliteMessageStore). */
  sqliteSynchronous: "full" | "normal";
  messageRetentionDays: number;
  inboxSize: number;
  inboxTtlSeconds: number;
  databaseUrl: string;
  databasePoolSize: number;
  databaseStatementTimeoutMs: number;
  maxRoomsPerConnection: number;
  version: string;
  authRequired: boolean;
  jwtSecret: string;
  jwtJwksUrl: string;
  jwtIssuer: string;
  jwtAudience: string;
  allowedOrigins: string[];
  trustedProxies: string[];
  connectRatePerIp: number;
  connectBurstPerIp: number;
  maxConnectionsPerUser: number;
  frameRate: number;
  frameBurst: number;
  restrictedRoomPrefixes: string[];
  maxRequestBodyBytes: number;
  backpressureLimitBytes: number;
  batchMaxFrames: number;
  batchMaxBytes: number;
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    readonly accepts: string,
    readonly value: string,
  ) {
    super(`invalid ${variable}=${JSON.stringify(value)}: expected ${accepts}`);
  }
}

type Parser<T> = (raw: string, name: string) => T;

const bounded =
  (min: number, max: number, accepts: string): Parser<number> =>
  (raw, name) => {
    if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(name, accepts, raw);
    const n = Number(raw.trim());
    if (n < min || n > max) throw new ConfigError(name, accepts, raw);
    return n;
  };

const integer = (min: number, max: number) => bounded(min, max, `an integer from ${min} to ${max}`);

/** A duration names its unit in its error, so `30s` given for milliseconds reads as the mistake it is. */
const duration = (unit: "milliseconds" | "seconds", min: number, max: number) =>
  bounded(min, max, `a whole number of ${unit} from ${min} to ${max}`);

const oneOf =
  <T extends string>(...values: T[]): Parser<T> =>
  (raw, name) => {
    const v = raw.trim().toLowerCase() as T;
    if (!values.includes(v)) throw new ConfigError(name, `one of ${values.join(", ")}`, raw);
    return v;
  };

const boolean: Parser<boolean> = (raw, name) => {
  const v = raw.trim().toLowerCase();
  if (["true", "1", "yes"].includes(v)) return true;
  if (["false", "0", "no"].includes(v)) return false;
  throw new ConfigError(name, "true or false", raw);
};

const text =
  (pattern: RegExp, accepts: string): Parser<string> =>
  (raw, name) => {
    if (!pattern.test(raw)) throw new ConfigError(name, accepts, raw);
    return raw;
  };

const anyText: Parser<string> = (raw) => raw;

/** An empty value gives 0: the caller derives the value from others. */
const orEmpty =
  (parse: Parser<number>): Parser<number> =>
  (raw, name) => {
    if (raw.trim() === "") return 0;
    try {
      return parse(raw, name);
    } catch (error) {
      if (error instanceof ConfigError) throw new ConfigError(name, `${error.accepts}, or empty`, raw);
      throw error;
    }
  };

/**
 * The frame size that fits a message whose text is MAX_TEXT_LENGTH characters as JSON.stringify
 * writes it: 6 bytes for a character it escapes (a control character or a lone surrogate, as
 * `\u001f`), at most 4 bytes of UTF-8 for any other, plus 1 KB for the other fields. A text within
 * the limit then never closes the connection with 1009.
 */
export function messageBytesFor(maxTextLength: number): number {
  return Math.min(6 * maxTextLength + 1024, 16_777_216);
}

const list =
  (item: RegExp, accepts: string): Parser<string[]> =>
  (raw, name) => {
    const items = raw
      .split(",")
      .map((x) => x.trim())
      .filter(Boolean);
    for (const x of items) if (!item.test(x)) throw new ConfigError(name, accepts, raw);
    return items;
  };

/** An IPv4 or IPv6 address, or a host name (RFC 1123 labels; a numeric last label is a bad address). */
const host: Parser<string> = (raw, name) => {
  const labels = raw.split(".");
  const hostName =
    raw.length <= 253 &&
    labels.every((l) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l)) &&
    !/^\d+$/.test(labels.at(-1)!);
  if (!isIP(raw) && !hostName) throw new ConfigError(name, "an IP address or a host name", raw);
  return raw;
};

/** The error names the first invalid entry, not the whole list, so the operator sees which one. */
const proxies: Parser<string[]> = (raw, name) => {
  const entries = raw
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);
  const bad = entries.find((entry) => !isProxyEntry(entry));
  if (bad !== undefined) {
    throw new ConfigError(name, "a comma-separated list of IP addresses, CIDRs (10.0.0.0/8, fd00::/8) or private", bad);
  }
  return entries;
};

const secret: Parser<string> = (raw, name) => {
  if (raw !== "" && raw.length < 32) throw new ConfigError(name, "a secret of at least 32 characters", "<hidden>");
  return raw;
};

const httpUrl: Parser<string> = (raw, name) => {
  if (raw === "") return "";
  try {
    const u = new URL(raw);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error();
  } catch {
    throw new ConfigError(name, "an http:// or https:// URL", raw);
  }
  return raw;
};

const redisUrl: Parser<string> = (raw, name) => {
  if (raw === "") return "";
  try {
    const u = new URL(raw);
    if (u.protocol !== "redis:" && u.protocol !== "rediss:") throw new Error();
  } catch {
    throw new ConfigError(name, "a redis:// or rediss:// URL", raw);
  }
  return raw;
};

const redisClusterNodes: Parser<ClusterTarget | undefined> = (raw, name) => {
  if (raw === "") return undefined;
  try {
    return parseClusterNodes(raw);
  } catch (error) {
    throw new ConfigError(name, (error as Error).message, redactEntry(raw));
  }
};

const databaseUrl: Parser<string> = (raw, name) => {
  if (raw === "") return "";
  try {
    const u = new URL(raw);
    if (u.protocol !== "postgres:" && u.protocol !== "postgresql:") throw new Error();
  } catch {
    throw new ConfigError(name, "a postgres:// or postgresql:// URL", "(hidden: it may hold a password)");
  }
  return raw;
};

/** Empty (chosen from REDIS_URL once every variable is read) or one of the stores. */
const storeKind: Parser<Config["store"]> = (raw, name) => {
  if (raw.trim() === "") return "" as Config["store"];
  try {
    return oneOf("sqlite", "memory")(raw, name);
  } catch {
    throw new ConfigError(name, "one of sqlite, memory, or empty", raw);
  }
};

interface Variable<K extends keyof Config> {
  key: K;
  parse: Parser<Config[K]>;
  default: string | (() => string);
  doc: string;
}

function v<K extends keyof Config>(
  key: K,
  parse: Parser<Config[K]>,
  def: string | (() => string),
  doc: string,
): Variable<K> {
  return { key, parse, default: def, doc };
}

const DAY = 86_400;

/** One table of every environment variable the server reads: name, parser, default, meaning. */
export const VARIABLES = {
  PORT: v("port", integer(0, 65535), "3001", "TCP port to listen on"),
  HOST: v("host", host, "0.0.0.0", "address to bind"),
  MAX_CONNECTIONS: v("maxConnections", integer(1, 1_000_000), "10000", "open WebSockets allowed per instance"),
  HEARTBEAT_INTERVAL: v(
    "heartbeatIntervalMs",
    duration("milliseconds", 100, 600_000),
    "30000",
    "ms between heartbeat frames and pings",
  ),
  PONG_TIMEOUT: v(
    "pongTimeoutMs",
    duration("milliseconds", 100, 600_000),
    "10000",
    "ms of silence allowed past the heartbeat interval",
  ),
  CONNECTION_TIMEOUT: v(
    "connectionTimeoutMs",
    duration("milliseconds", 0, 86_400_000),
    "300000",
    "ms without a client frame before closing; 0 disables",
  ),
  MAX_TEXT_LENGTH: v(
    "maxTextLength",
    integer(1, 1_000_000),
    "4000",
    "characters (Unicode code points) allowed in a message text",
  ),
  MAX_MESSAGE_BYTES: v(
    "maxMessageBytes",
    orEmpty(integer(128, 16_777_216)),
    "",
    "largest client frame in bytes; larger closes with 1009; empty: room for any text of MAX_TEXT_LENGTH",
  ),
  HISTORY_SIZE: v("historySize", integer(0, 1_000_000), "100", "messages kept per room"),
  HISTORY_MAX_BYTES: v(
    "historyMaxBytes",
    integer(1_048_576, 68_719_476_736),
    String(64 * 1_048_576),
    "bytes of messages the in-memory history holds across all rooms (without REDIS_URL)",
  ),
  HISTORY_TTL: v(
    "historyTtlSeconds",
    duration("seconds", 1, 365 * DAY),
    String(7 * DAY),
    "seconds a room's history lives after its last message",
  ),
  SESSION_TTL: v(
    "sessionTtlSeconds",
    duration("seconds", 1, 7 * DAY),
    "120",
    "seconds a session can be resumed after a disconnect",
  ),
  DEDUP_WINDOW: v(
    "dedupWindowSeconds",
    duration("seconds", 1, 7 * DAY),
    "300",
    "seconds a clientMsgId is remembered per user",
  ),
  PRESENCE_TTL: v(
    "presenceTtlSeconds",
    duration("seconds", 3, 3600),
    "30",
    "seconds before a dead instance's members leave presence",
  ),
  DRAIN_TIMEOUT: v(
    "drainTimeoutMs",
    duration("milliseconds", 0, 3_600_000),
    "30000",
    "ms allowed to close every connection on shutdown",
  ),
  DRAIN_JITTER_MS: v(
    "drainJitterMs",
    duration("milliseconds", 0, 600_000),
    "5000",
    "spread of goodbye retryAfterMs so clients do not reconnect at once",
  ),
  LOG_LEVEL: v(
    "logLevel",
    oneOf("error", "warn", "info", "http", "verbose", "debug", "silly"),
    "info",
    "winston log level",
  ),
  LOG_DIR: v("logDir", anyText, "", "directory for rotated JSON log files; empty logs to stdout only"),
  COLOR: v("color", oneOf("blue", "green", "none"), "none", "deployment color of this instance"),
  INSTANCE_ID: v(
    "instanceId",
    text(/^[A-Za-z0-9_.:-]{1,64}$/, "1-64 characters of A-Z a-z 0-9 _ . : -"),
    () => `${hostname()}-${process.pid}`,
    "name of this instance in logs, metrics and frames",
  ),
  METRICS_TOKEN: v(
    "metricsToken",
    anyText,
    "",
    "bearer token for /metrics; empty allows loopback and private addresses only",
  ),
  ADMIN_TOKEN: v("adminToken", anyText, "", "bearer token for /admin routes; empty disables them"),
  REDIS_URL: v("redisUrl", redisUrl, "", "redis:// URL; empty keeps everything in memory on this instance"),
  REDIS_CLUSTER_NODES: v(
    "redisCluster",
    redisClusterNodes,
    "",
    "comma-separated host:port seed nodes of a Redis Cluster (or redis:// / rediss:// URLs with the credentials of every node); instead of REDIS_URL",
  ),
  REDIS_REQUIRED: v("redisRequired", boolean, "false", "report not ready while Redis is unreachable"),
  REDIS_KEY_PREFIX: v(
    "redisKeyPrefix",
    text(/^[A-Za-z0-9_.:-]{0,64}$/, "0-64 characters of A-Z a-z 0-9 _ . : -"),
    "chat:",
    "prefix of every Redis key and channel",
  ),
  STORE: v(
    "store",
    storeKind,
    "",
    "where room messages are kept: sqlite (a file under DATA_DIR; one instance, not with REDIS_URL) or memory (the hot history only); empty: sqlite without REDIS_URL, memory with it",
  ),
  DATA_DIR: v("dataDir", anyText, "./data", "directory of the SQLite message database (created when missing)"),
  SQLITE_SYNCHRONOUS: v(
    "sqliteSynchronous",
    oneOf("full", "normal"),
    "full",
    "full: a message is acknowledged once its commit is on disk (survives a power cut); normal: once it is in the operating system's cache (survives a crash or kill of the process, not of the machine), for shorter commits",
  ),
  MESSAGE_RETENTION_DAYS: v(
    "messageRetentionDays",
    integer(0, 36_500),
    "0",
    "days stored messages are kept in the database; 0 keeps them forever",
  ),
  INBOX_SIZE: v(
    "inboxSize",
    integer(1, 100_000),
    "1000",
    "direct messages kept per user's inbox (received and sent) for delivery on reconnect; older ones are dropped",
  ),
  INBOX_TTL: v(
    "inboxTtlSeconds",
    duration("seconds", 60, 365 * DAY),
    String(30 * DAY),
    "seconds a user's inbox lives after its last direct message (Redis and memory; SQLite uses MESSAGE_RETENTION_DAYS)",
  ),
  DATABASE_URL: v(
    "databaseUrl",
    databaseUrl,
    "",
    "postgres:// URL: room messages are written behind from Redis into PostgreSQL (needs REDIS_URL); sslmode=require|verify-full in the URL for TLS",
  ),
  DATABASE_POOL_SIZE: v("databasePoolSize", integer(1, 100), "4", "PostgreSQL connections per instance"),
  DATABASE_STATEMENT_TIMEOUT_MS: v(
    "databaseStatementTimeoutMs",
    integer(100, 600_000),
    "5000",
    "PostgreSQL cancels a statement running longer (milliseconds)",
  ),
  MAX_ROOMS_PER_CONNECTION: v("maxRoomsPerConnection", integer(1, 10_000), "50", "rooms one connection may join"),
  APP_VERSION: v("version", anyText, () => BUILD_VERSION, "version reported in /health and frames"),
  AUTH_REQUIRED: v(
    "authRequired",
    boolean,
    "false",
    "require a JWT on connect; false lets anyone pick a user id (development only)",
  ),
  JWT_SECRET: v("jwtSecret", secret, "", "HS256 secret (at least 32 characters) for connect tokens"),
  JWT_JWKS_URL: v(
    "jwtJwksUrl",
    httpUrl,
    "",
    "JWKS URL for asymmetric connect tokens; used instead of JWT_SECRET when set",
  ),
  JWT_ISSUER: v("jwtIssuer", anyText, "", "required `iss` of tokens; empty accepts any"),
  JWT_AUDIENCE: v("jwtAudience", anyText, "", "required `aud` of tokens; empty accepts any"),
  ALLOWED_ORIGINS: v(
    "allowedOrigins",
    list(/^(\*|https?:\/\/[^\s/]+)$/, "a comma-separated list of origins like https://chat.example.com"),
    "",
    "origins allowed to open WebSockets; empty allows any",
  ),
  TRUSTED_PROXIES: v(
    "trustedProxies",
    proxies,
    "",
    "peers whose X-Forwarded-For is believed (Traefik); empty believes none",
  ),
  CONNECT_RATE_PER_IP: v(
    "connectRatePerIp",
    integer(1, 100_000),
    "10",
    "WebSocket upgrades per second allowed per client IP",
  ),
  CONNECT_BURST_PER_IP: v("connectBurstPerIp", integer(1, 100_000), "20", "burst of upgrades allowed per client IP"),
  MAX_CONNECTIONS_PER_USER: v(
    "maxConnectionsPerUser",
    integer(1, 100_000),
    "10",
    "open connections allowed per user on one instance",
  ),
  FRAME_RATE: v("frameRate", integer(1, 100_000), "20", "client frames per second allowed per connection"),
  FRAME_BURST: v("frameBurst", integer(1, 100_000), "40", "burst of client frames allowed per connection"),
  RESTRICTED_ROOM_PREFIXES: v(
    "restrictedRoomPrefixes",
    list(/^[A-Za-z0-9_.-]{1,32}$/, "a comma-separated list of role names"),
    "admin",
    "rooms named <role>:* need that role in the token",
  ),
  MAX_REQUEST_BODY_BYTES: v(
    "maxRequestBodyBytes",
    integer(1024, 16_777_216),
    "65536",
    "largest HTTP request body accepted",
  ),
  BACKPRESSURE_LIMIT_BYTES: v(
    "backpressureLimitBytes",
    integer(16_384, 1_048_576),
    "1048576",
    "bytes buffered for a slow client before it is closed (4008, or cut at once: docs/protocol.md)",
  ),
  BATCH_MAX_FRAMES: v(
    "batchMaxFrames",
    integer(1, 1024),
    "64",
    "most frames joined into one WebSocket frame for clients that ask for batches",
  ),
  BATCH_MAX_BYTES: v(
    "batchMaxBytes",
    integer(1024, 1_048_576),
    "65536",
    "largest WebSocket frame of joined frames (UTF-8 bytes); a single larger frame is sent alone",
  ),
} as const;

declare const __APP_VERSION__: string | undefined;
/** Set at compile time by scripts/build.ts; falls back to package.json when run from source. */
const BUILD_VERSION: string =
  typeof __APP_VERSION__ === "string" ? __APP_VERSION__ : (process.env.npm_package_version ?? "dev");

function hostname(): string {
  return (require("node:os").hostname() as string).replace(/[^A-Za-z0-9_.:-]/g, "-").slice(0, 48) || "instance";
}

/** Parses the environment; throws ConfigError naming the first invalid variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Readonly<Config> {
  const out: Partial<Record<keyof Config, unknown>> = {};
  for (const [name, variable] of Object.entries(VARIABLES) as [string, Variable<keyof Config>][]) {
    const given = env[name];
    const raw = given === undefined || given === "" ? resolveDefault(variable.default) : given;
    out[variable.key] = variable.parse(raw, name);
  }
  const config = out as Config;
  if (config.redisUrl && config.redisCluster) {
    throw new ConfigError("REDIS_CLUSTER_NODES", "REDIS_URL to be empty when set (one Redis or one cluster)", "(set)");
  }
  if (config.maxMessageBytes === 0) config.maxMessageBytes = messageBytesFor(config.maxTextLength);
  const sharedRedis = Boolean(config.redisUrl || config.redisCluster);
  if (!config.store) config.store = sharedRedis ? "memory" : "sqlite";
  else if (config.store === "sqlite" && sharedRedis) {
    // Each instance would keep its own file: history would differ by the instance a client reaches.
    throw new ConfigError(
      "STORE",
      "memory or empty when REDIS_URL or REDIS_CLUSTER_NODES is set (SQLite is one instance's file)",
      "sqlite",
    );
  }
  if (config.databaseUrl && !sharedRedis) {
    // Messages reach PostgreSQL from the Redis room logs; without Redis there is nothing to drain.
    throw new ConfigError(
      "DATABASE_URL",
      "REDIS_URL or REDIS_CLUSTER_NODES to be set too (messages are written behind from Redis)",
      "(hidden)",
    );
  }
  if (config.authRequired && !config.jwtSecret && !config.jwtJwksUrl) {
    throw new ConfigError("AUTH_REQUIRED", "JWT_SECRET or JWT_JWKS_URL to be set when true", "true");
  }
  return Object.freeze(config);
}

function resolveDefault(d: string | (() => string)): string {
  return typeof d === "function" ? d() : d;
}
