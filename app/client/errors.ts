/** Why a request of the client failed. `code` is stable: an error code of the server or one below. */
export class ChatClientError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** True when the same request may succeed later unchanged. */
    readonly temporary = false,
  ) {
    super(message);
    this.name = "ChatClientError";
  }
}

/** Codes of failures the client itself detects. */
export const ClientErrorCode = {
  /** The outgoing queue is full (maxQueueBytes, or maxQueue when set) while disconnected. */
  QueueFull: "queue_full",
  /** A message waited longer than queueTimeoutMs for a connection. */
  QueueTimeout: "queue_timeout",
  /** The request cannot wait for a connection (typing, presence, history, ...). */
  NotConnected: "not_connected",
  /** The connection dropped before the answer of a request that is not resent. */
  ConnectionLost: "connection_lost",
  /** No answer within requestTimeoutMs. */
  Timeout: "timeout",
  /** The client was closed, by `close()` or by a close code after which it does not reconnect. */
  Closed: "closed",
} as const;
