// The chat client library: `connect(url, options)` returns a ChatClient. No runtime dependency;
// runs in browsers and in Bun.

export { type BackoffOptions, backoffCeiling, backoffDelay, DEFAULT_BACKOFF } from "./backoff";
export type {
  ChatEvents,
  ConnectionState,
  ConnectOptions,
  JoinResult,
  SentDirect,
  SentMessage,
  StateChange,
  WebSocketLike,
} from "./chat-client";
export { ChatClient, connect } from "./chat-client";
export { ChatClientError, ClientErrorCode } from "./errors";
export { randomId } from "./ids";
export type * from "./protocol";
export { CloseCode, ErrorCode, RECONNECTABLE_CLOSE_CODES } from "./protocol";
