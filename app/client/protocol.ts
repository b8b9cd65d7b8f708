// The client's view of protocol v1 (docs/protocol.md): frame types and the stable codes. The package
// carries its own copy so it has no dependency; test/client/protocol.test.ts checks that the copy
// matches the server's tables (src/protocol/codes.ts, src/protocol/server-frames.ts).

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

/** WebSocket close codes of the protocol (docs/protocol.md#close-codes). */
export const CloseCode = {
  Normal: 1000,
  /** Too many invalid frames: a client bug, reconnecting would repeat it. */
  InvalidFrames: 1003,
  /** No close frame: the network dropped or the server died. Set by the WebSocket, never sent. */
  Abnormal: 1006,
  /** The client kept sending past the rate limit. */
  PolicyViolation: 1008,
  /** A frame larger than the server's MAX_MESSAGE_BYTES. */
  TooLarge: 1009,
  Internal: 1011,
  /** Graceful shutdown or deploy; a `goodbye` frame came first. */
  ServiceRestart: 1012,
  /** The instance filled up, or started draining, between the upgrade and the open. */
  OverCapacity: 1013,
  HeartbeatTimeout: 4000,
  /** Another socket connected with the same connectionId. */
  Replaced: 4001,
  IdleTimeout: 4002,
  /** The client did not read: its send buffer passed the server's limit. */
  SlowConsumer: 4008,
  /** The token expired and no fresh one came in an `auth` frame. */
  TokenExpired: 4401,
  /** Another user holds this connectionId on the instance; connect again with a new one. */
  ConnectionIdInUse: 4409,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** Close codes after which the client connects again; after any other it stops. */
export const RECONNECTABLE_CLOSE_CODES: ReadonlySet<number> = new Set<number>([
  CloseCode.Abnormal,
  CloseCode.Internal,
  CloseCode.ServiceRestart,
  CloseCode.OverCapacity,
  CloseCode.HeartbeatTimeout,
  CloseCode.IdleTimeout,
  CloseCode.SlowConsumer,
]);

/** A room message, live or replayed, and as stored in history. */
export interface RoomMessage {
  room: string;
  id: string;
  /** 1, 2, 3, ... per room within its epoch. */
  offset: number;
  from: string;
  text: string;
  ts: number;
  clientMsgId: string;
}

export interface DirectMessage {
  id: string;
  from: string;
  to: string;
  text: string;
  ts: number;
  clientMsgId: string;
  /** Its offset in the inbox of the user receiving it, and that inbox's epoch (absent from servers older than inboxes). */
  offset?: number;
  epoch?: string;
}

export interface ConnectionEstablished {
  connectionId: string;
  userId: string;
  instanceId: string;
  /** The deployment color of the instance: "blue", "green" or "none". */
  color: string;
  version: string;
  heartbeatIntervalMs: number;
  /** Frames per second and burst the server allows this connection (absent from older servers). */
  frameRate?: number;
  frameBurst?: number;
  /** True when the server resumed a session of this connectionId. */
  resumed: boolean;
  rooms: string[];
  protocol: number;
  /** Present when the connection asked for batched frames: the most frames and bytes one WebSocket frame holds. */
  batch?: { maxFrames: number; maxBytes: number };
}

export interface MessageResponse {
  type: "message_response";
  ref?: string;
  ok: true;
  for: string;
  [field: string]: unknown;
}

export interface ErrorFrame {
  type: "error";
  code: string;
  message: string;
  ref?: string;
  temporary: boolean;
}

export interface Goodbye {
  reason: string;
  reconnect: boolean;
  retryAfterMs: number;
}

export interface Presence {
  room: string;
  members: string[];
}

export interface PresenceDiff {
  room: string;
  joins: string[];
  leaves: string[];
}

export interface Typing {
  room: string;
  from: string;
  active: boolean;
}

export interface ReadReceipt {
  room: string;
  from: string;
  offset: number;
}

export interface History {
  room: string;
  messages: RoomMessage[];
  hasMore: boolean;
}

export interface SystemNotice {
  text: string;
  ts: number;
}

/** Every frame the server sends, by `type`. */
export type ServerFrame =
  | ({ type: "connection_established" } & ConnectionEstablished)
  | { type: "heartbeat"; ts: number }
  | { type: "pong"; ref?: string; ts: number }
  | MessageResponse
  | ErrorFrame
  | ({ type: "goodbye" } & Goodbye)
  | ({ type: "message" } & RoomMessage)
  | { type: "epoch"; room: string; epoch: string; offset: number }
  | ({ type: "direct" } & DirectMessage)
  | ({ type: "typing" } & Typing)
  | ({ type: "read" } & ReadReceipt)
  | ({ type: "presence"; ref?: string } & Presence)
  | ({ type: "presence_diff" } & PresenceDiff)
  | ({ type: "history"; ref?: string } & History)
  | ({ type: "system" } & SystemNotice);
