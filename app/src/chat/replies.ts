import type { Connection } from "../connections/connection";
import type { Metrics } from "../observability/metrics";
import { CloseCode, ErrorCode, INVALID_FRAME_LIMIT, INVALID_FRAME_WINDOW_MS } from "../protocol/codes";
import { frames } from "../protocol/server-frames";
import { ChatError } from "./errors";

/** Answers to one connection: responses to its requests and `error` frames, each counted. */
export class Replies {
  constructor(
    private readonly metrics: Metrics,
    private readonly now: () => number,
  ) {}

  respond(connection: Connection, forType: string, ref: string | undefined, result: Record<string, unknown>) {
    connection.send(frames.response(forType, ref, result));
    this.metrics.countOut("message_response");
  }

  /** Sends a response already built (frames.messageStored). */
  respondWith(connection: Connection, response: string) {
    connection.send(response);
    this.metrics.countOut("message_response");
  }

  error(connection: Connection, code: ErrorCode, message: string, ref: string | undefined) {
    connection.send(frames.error(code, message, ref));
    this.metrics.errors.labels(code).inc();
    this.metrics.countOut("error");
  }

  /** Answers an invalid frame; the eleventh within a minute closes the connection with 1003. */
  invalid(connection: Connection, code: ErrorCode, message: string, ref: string | undefined) {
    this.error(connection, code, message, ref);
    const now = this.now();
    const recent = (connection.invalidFrames ??= []);
    while (recent.length > 0 && now - recent[0]! > INVALID_FRAME_WINDOW_MS) recent.shift();
    recent.push(now);
    if (recent.length > INVALID_FRAME_LIMIT) connection.close(CloseCode.InvalidFrames, "too many invalid frames");
  }
}

export function notInRoom(room: string) {
  return new ChatError(ErrorCode.NotInRoom, `join ${room} first`);
}

/** A repeat of a message whose first send is still being handled (on another connection or server). */
export function stillProcessing() {
  return new ChatError(ErrorCode.Unavailable, "a message with this clientMsgId is still being processed; retry");
}
