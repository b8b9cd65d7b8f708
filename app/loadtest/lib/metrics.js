// Custom metrics shared by every scenario. k6/websockets already emits ws_connecting (time from
// the start of the handshake to the open event), ws_sessions, ws_msgs_sent and ws_msgs_received.
import { Counter, Rate, Trend } from "k6/metrics";

/** End-to-end latency of a room message: sender's `sentAt` to arrival at each member, sender included. */
export const msgLatency = new Trend("msg_latency", true);
/** A session succeeded when it connected, joined its room and was closed by the client, not the server. */
export const sessionSuccess = new Rate("session_success");
/** `error` frames received, tagged with their code. */
export const errorFrames = new Counter("error_frames");
/** Sockets closed (or failed) without the client asking for it. */
export const unexpectedCloses = new Counter("unexpected_closes");
/** Share of operations (connect, join, message) that failed: error frames, failed connects, missing acks. */
export const errors = new Rate("errors");
/** Room messages received by members. */
export const messagesReceived = new Counter("chat_messages_received");
/** Room messages sent by this load generator. */
export const messagesSent = new Counter("chat_messages_sent");

/** The pass/fail criteria of every scenario (issue: connect p95 < 2 s, latency p95 < 1 s, ...). */
export const thresholds = {
  ws_connecting: ["p(95)<2000"],
  msg_latency: ["p(95)<1000"],
  session_success: ["rate>0.95"],
  errors: ["rate<0.01"],
  // Without it a server that acknowledges messages but never fans them out would pass.
  chat_messages_received: ["count>0"],
};

/**
 * Tags k6 puts on its own samples. Every connection has its own URL (the connectionId is in the path),
 * so the default `url` and `name` tags would make one time series per connection.
 */
export const systemTags = ["status", "scenario", "error_code"];
