// The chat client library: `connect(url, options)` returns a ChatClient. No runtime dependency;
// runs in browsers, Bun and Node 20+ (the global WebSocket, or one passed in).

export { type BackoffOptions, backoffCeiling, backoffDelay, DEFAULT_BACKOFF } from "./backoff.js";
export type {
  ChatEvents,
  ConnectionState,
  ConnectOptions,
  InboxResult,
  JoinResult,
  RoomPosition,
  SentDirect,
  SentMessage,
  StateChange,
  WebSocketLike,
} from "./chat-client.js";
export { ChatClient, connect } from "./chat-client.js";
export { ChatClientError, ClientErrorCode } from "./errors.js";
export { randomId } from "./ids.js";
export type { InboxPosition } from "./inbox.js";
export type * from "./protocol.js";
export { CloseCode, ErrorCode, RECONNECTABLE_CLOSE_CODES } from "./protocol.js";
