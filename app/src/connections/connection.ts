import type { ServerWebSocket } from "bun";
import type { InboxCursor } from "../inbox/cursor";
import type { TokenBucket } from "../limits/token-bucket";
import type { Batch, FrameBatcher } from "./batching";

/** The smallest slice of Bun's ServerWebSocket the chat needs. */
export type Socket = Pick<
  ServerWebSocket<unknown>,
  "send" | "close" | "ping" | "subscribe" | "unsubscribe" | "publish" | "readyState" | "remoteAddress" | "terminate"
> & { getBufferedAmount?(): number };

/** A connection's place in a room: messages above `liveFrom` reach it by publish, older ones by replay. */
export interface RoomMembership {
  epoch: string;
  liveFrom: number;
}

/** One open WebSocket and everything it holds. Kept small: an idle connection costs memory per socket. */
export class Connection {
  readonly rooms = new Map<string, RoomMembership>();
  /** Last time anything (a frame or a pong) came from the client. */
  lastSeenAt: number;
  /** Last client frame; pongs do not count, so CONNECTION_TIMEOUT closes sockets that only answer pings. */
  lastFrameAt: number;
  nextHeartbeatAt: number;
  invalidFrames: number[] | undefined;
  closing = false;
  /** Set when a newer socket took over this connectionId: closing it then releases nothing. */
  replaced = false;
  /** Pending while a resumed session is restored; frames wait for it. */
  ready: Promise<void> | undefined;
  /** Roles from the token, for restricted rooms. */
  roles: readonly string[] = [];
  /** Token expiry (ms since the epoch); undefined without a token or without `exp`. */
  expiresAt: number | undefined;
  /** Frame rate limit, created with the connection. */
  frames: TokenBucket | undefined;
  /** Rate-limited frames since the last accepted one. */
  limitedStreak = 0;
  closeCode: number | undefined;
  /** What this connection was sent of its user's inbox; created with the first direct message. */
  inbox: InboxCursor | undefined;
  /** The client's address as admission saw it: the drain paces the reconnects of each address. */
  clientIp: string | undefined;
  /** Set when the client asked for batched frames: its frames are joined per event-loop turn. */
  batcher: FrameBatcher | undefined;
  /** This turn's frames for this connection alone, not sent yet (batched connections only). */
  batch: Batch | undefined;

  constructor(
    readonly id: string,
    readonly userId: string,
    readonly socket: Socket,
    readonly openedAt: number,
    heartbeatIntervalMs: number,
  ) {
    this.lastSeenAt = openedAt;
    this.lastFrameAt = openedAt;
    this.nextHeartbeatAt = openedAt + heartbeatIntervalMs;
  }

  /** Sends a frame to this connection: at once, or with the others of this turn when batched. */
  send(frame: string) {
    const batcher = this.batcher;
    if (batcher) batcher.sendTo(this, frame);
    else this.socket.send(frame);
  }

  /** Closes once; later calls are ignored so the first reason is the one reported. Pending frames go first. */
  close(code: number, reason: string) {
    if (this.closing) return;
    this.batcher?.flushConnection(this);
    this.closing = true;
    this.closeCode = code;
    this.socket.close(code, reason);
  }

  /** Drops the TCP connection without a close handshake, for a peer that no longer reads. */
  terminate() {
    this.closing = true;
    this.socket.terminate();
  }
}
