// The client's view of protocol v1 (docs/protocol.md). Types only, plus the close-code table the
// server publishes: the bundler inlines these few constants, so the library has no runtime dependency.

import type { DirectMessage, ConnectionEstablished as Established, RoomMessage } from "../src/protocol/server-frames";

export { CloseCode, ErrorCode, RECONNECTABLE_CLOSE_CODES } from "../src/protocol/codes";
export type { DirectMessage, RoomMessage };

export type ConnectionEstablished = Established & { protocol: number };

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
