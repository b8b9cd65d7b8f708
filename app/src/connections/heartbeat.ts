import { CloseCode } from "../protocol/codes";
import { frames } from "../protocol/server-frames";
import type { ConnectionRegistry } from "./registry";

export interface HeartbeatOptions {
  /** Send-buffer size past which a client counts as not reading; 0 disables the check. */
  backpressureLimitBytes?: number;
  onSlowConsumer?: () => void;
  heartbeatIntervalMs: number;
  pongTimeoutMs: number;
  connectionTimeoutMs: number;
  now?: () => number;
  onSent?: (count: number) => void;
}

/**
 * One timer for every connection: each tick sends the heartbeats that are due (a `heartbeat` frame and
 * a WebSocket ping), closes connections silent past interval + PONG_TIMEOUT with 4000, and those
 * without a client frame for CONNECTION_TIMEOUT with 4002, those whose token expired with 4401, and
 * those whose send buffer reached the backpressure limit with 4008 (terminated a tick later if the
 * peer does not read the close frame either). Heartbeats stay spread out because each
 * connection's schedule starts at its own open time.
 */
export function startHeartbeat(registry: ConnectionRegistry, options: HeartbeatOptions) {
  const now = options.now ?? Date.now;
  const silenceLimit = options.heartbeatIntervalMs + options.pongTimeoutMs;
  const tickMs = Math.max(
    50,
    Math.min(1000, Math.floor(Math.min(options.heartbeatIntervalMs, options.pongTimeoutMs) / 4)),
  );

  const limit = options.backpressureLimitBytes ?? 0;
  const tick = () => {
    const t = now();
    let sent = 0;
    for (const connection of registry.values()) {
      if (connection.closing) {
        // Closed a tick ago but still registered: the peer never read the close frame either.
        if (connection.closeCode === CloseCode.SlowConsumer) connection.terminate();
        continue;
      }
      if (limit > 0 && (connection.socket.getBufferedAmount?.() ?? 0) >= limit) {
        connection.close(CloseCode.SlowConsumer, "slow consumer");
        options.onSlowConsumer?.();
        continue;
      }
      if (connection.expiresAt !== undefined && t >= connection.expiresAt) {
        connection.close(CloseCode.TokenExpired, "token expired");
        continue;
      }
      if (t - connection.lastSeenAt > silenceLimit) {
        connection.close(CloseCode.HeartbeatTimeout, "heartbeat timeout");
        continue;
      }
      if (options.connectionTimeoutMs > 0 && t - connection.lastFrameAt > options.connectionTimeoutMs) {
        connection.close(CloseCode.IdleTimeout, "idle timeout");
        continue;
      }
      if (t >= connection.nextHeartbeatAt) {
        connection.nextHeartbeatAt = t + options.heartbeatIntervalMs;
        connection.socket.send(frames.heartbeat(t));
        connection.socket.ping();
        sent++;
      }
    }
    if (sent > 0) options.onSent?.(sent);
  };

  const timer = setInterval(tick, tickMs);
  return { stop: () => clearInterval(timer), tick };
}
