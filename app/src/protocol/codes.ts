// Stable identifiers of protocol v1. Clients switch on these values; never renumber or rename one.

export const PROTOCOL_VERSION = 1;

/** `code` of an `error` frame. `temporary` errors may succeed when retried unchanged. */
export const ErrorCode = {
  InvalidJson: "invalid_json",
  InvalidFrame: "invalid_frame",
  UnknownType: "unknown_type",
  BinaryNotSupported: "binary_not_supported",
  TextTooLong: "text_too_long",
  NotInRoom: "not_in_room",
  TooManyRooms: "too_many_rooms",
  RateLimited: "rate_limited",
  Forbidden: "forbidden",
  InvalidToken: "invalid_token",
  Unavailable: "unavailable",
  ShuttingDown: "shutting_down",
  Internal: "internal_error",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export const TEMPORARY_ERRORS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  ErrorCode.RateLimited,
  ErrorCode.Unavailable,
  ErrorCode.ShuttingDown,
  ErrorCode.Internal,
]);

/** WebSocket close codes the server uses, with whether a client should reconnect. */
export const CloseCode = {
  Normal: 1000,
  /** Too many invalid frames: a client bug, reconnecting would repeat it. */
  InvalidFrames: 1003,
  PolicyViolation: 1008,
  /** Frame larger than MAX_MESSAGE_BYTES (checked in app.ts before the frame is parsed). */
  TooLarge: 1009,
  Internal: 1011,
  /** Graceful shutdown or deploy; a `goodbye` frame came first. */
  ServiceRestart: 1012,
  /** The instance filled up between the upgrade and the open. */
  OverCapacity: 1013,
  HeartbeatTimeout: 4000,
  /** Another socket connected with the same connectionId. */
  Replaced: 4001,
  IdleTimeout: 4002,
  /**
   * The connectionId is open for another user on this instance: the newer socket is refused and the
   * open one kept (HTTP 409 `connection_id_in_use` before the upgrade; this code when the two raced).
   */
  ConnectionIdInUse: 4409,
  /** The client did not read: its send buffer passed BACKPRESSURE_LIMIT_BYTES. */
  SlowConsumer: 4008,
  /** The token expired and no fresh one came in an `auth` frame. */
  TokenExpired: 4401,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

export const RECONNECTABLE_CLOSE_CODES: ReadonlySet<number> = new Set<number>([
  1006,
  CloseCode.Internal,
  CloseCode.ServiceRestart,
  CloseCode.OverCapacity,
  CloseCode.HeartbeatTimeout,
  CloseCode.IdleTimeout,
  CloseCode.SlowConsumer,
]);

/** Kinds of limit counted in websocket_rate_limited_total. */
export type LimitKind = "ip" | "user" | "frames";

/** More than this many invalid frames within INVALID_FRAME_WINDOW_MS closes with 1003. */
export const INVALID_FRAME_LIMIT = 10;
export const INVALID_FRAME_WINDOW_MS = 60_000;
