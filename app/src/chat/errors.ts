import type { ErrorCode } from "../protocol/codes";

/** A request the server understood but refuses; becomes an `error` frame with this code. */
export class ChatError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}
