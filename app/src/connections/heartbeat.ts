import { CloseCode } from "../protocol/codes";
import { frames } from "../protocol/server-frames";
import type { ConnectionRegistry } from "./registry";

export interface HeartbeatOptions {
  heartbeatIntervalMs: number;
  pongTimeoutMs: number;
  connectionTimeoutMs: number;
  now?: () => number;
  onSent?: (count: number) => void;
}

/**
 * One timer for every connection: each tick sends the heartbeats that are due (a `heartbeat` frame and
 * a WebSocket ping), closes connections silent past interval + PONG_TIMEOUT with 4000, and those
 * without a client frame for CONNECTION_TIMEOUT with 4002. Heartbeats stay spread out because each
 * connection's schedule starts at its own open time.
 */
export function startHeartbeat(registry: ConnectionRegistry, options: HeartbeatOptions) {
  const now = options.now ?? Date.now;
  const silenceLimit = options.heartbeatIntervalMs + options.pongTimeoutMs;
  const tickMs = Math.max(50, Math.min(1000, Math.floor(Math.min(options.heartbeatIntervalMs, options.pongTimeoutMs) / 4)));

  const tick = () => {
    const t = now();
    let sent = 0;
    for (const connection of registry.values()) {
      if (connection.closing) continue;
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
