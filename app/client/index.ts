// The chat client library: `connect(url, options)` returns a ChatClient. No runtime dependency;
// runs in browsers and in Bun.
export { ChatClient, connect } from "./chat-client";
export type { ChatEvents, ConnectOptions, ConnectionState, JoinResult, SentDirect, SentMessage, StateChange, WebSocketLike } from "./chat-client";
export { backoffCeiling, backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from "./backoff";
export { ChatClientError, ClientErrorCode } from "./errors";
export { randomId } from "./ids";
export { CloseCode, ErrorCode, RECONNECTABLE_CLOSE_CODES } from "./protocol";
export type * from "./protocol";
