import type { Identity } from "../auth/auth";
import type { Connection, Socket } from "../connections/connection";
import { TokenBucket } from "../limits/token-bucket";
import { type ClientFrame, parseClientFrame, validateClientFrame } from "../protocol/client-frames";
import { CloseCode, ErrorCode } from "../protocol/codes";
import { frames } from "../protocol/server-frames";
import { BROADCAST_TOPIC, roomTopic } from "../rooms/topics";
import type { ChatContext, ChatDeps } from "./context";
import { Delivery } from "./delivery";
import { ChatError } from "./errors";
import { dispatch } from "./handlers";
import { closeConnection, openConnection } from "./lifecycle";
import { Memberships } from "./membership";
import { Replies } from "./replies";
import { RoomSequencer } from "./sequencer";

export type { ChatDeps } from "./context";

/**
 * The chat protocol: what each client frame does, and what happens when a connection opens and
 * closes. Transport-agnostic: it is handed sockets and text, and publishes through `local` and the
 * backplane. The frame handlers live in handlers/, one file per frame family.
 */
export class ChatService implements ChatContext {
  readonly now: () => number;
  readonly sequencer: RoomSequencer;
  readonly delivery: Delivery;
  readonly memberships: Memberships;
  readonly replies: Replies;

  constructor(readonly deps: ChatDeps) {
    this.now = deps.now ?? Date.now;
    this.sequencer = new RoomSequencer(
      deps.history,
      (room, frame) => {
        const topic = roomTopic(room);
        deps.local.publish(topic, frame);
        deps.metrics.countOut("message", deps.local.subscriberCount(topic));
      },
      (count) => deps.metrics.gapsFilled.inc(count),
    );
    this.delivery = new Delivery(deps, this.sequencer);
    this.memberships = new Memberships(deps, this.sequencer, this.delivery);
    this.replies = new Replies(deps.metrics, this.now);
    deps.backplane.onEnvelope((envelope) => this.delivery.deliverRemote(envelope));
    // Room messages published while the subscription was away are read from history now, not at
    // the room's next message (which a quiet room may not send for a long time).
    deps.backplane.onResubscribed?.((topic) => {
      if (topic.startsWith("room:")) void this.sequencer.catchUp(topic.slice(5));
    });
    deps.presence.onExpired((room, userIds) =>
      this.publish(roomTopic(room), frames.presenceDiff(room, [], userIds), "presence_diff"),
    );
    void deps.backplane.subscribe(BROADCAST_TOPIC).catch(() => {});
  }

  /** Called when this instance no longer carries a topic: a room's order is re-learnt on rejoin. */
  released(topic: string) {
    if (topic.startsWith("room:")) this.sequencer.forget(topic.slice(5));
  }

  /**
   * Registers a newly opened socket. A live connection of the same user with the same id is
   * replaced (closed with 4001) and its rooms carry over; otherwise a saved session of the same user
   * is resumed. Undefined when the id is open for another user: the socket was closed with 4409.
   * A `batched` connection gets its frames joined per event-loop turn (see FrameBatcher).
   */
  open(socket: Socket, connectionId: string, identity: Identity, batched = false): Connection | undefined {
    return openConnection(this, socket, connectionId, identity, batched);
  }

  /** Releases what the connection held and saves its session for SESSION_TTL. */
  close(connection: Connection, code: number): Promise<void> {
    return closeConnection(this, connection, code);
  }

  pong(connection: Connection) {
    connection.lastSeenAt = this.now();
  }

  /**
   * Handles one client frame: text, or a value the framework already parsed from JSON text.
   * Never throws: every failure becomes an `error` frame. Returns a promise only while something
   * is awaited (a resumed session, a store with I/O): a room message on the in-memory store is
   * handled in one synchronous step.
   */
  frame(connection: Connection, value: unknown): Promise<void> | undefined {
    const { config } = this.deps;
    const received = performance.now();
    const now = this.now();
    connection.lastSeenAt = now;
    connection.lastFrameAt = now;
    // Created on the first frame: an idle connection never pays for its bucket.
    connection.frames ??= new TokenBucket(config.frameRate, config.frameBurst, now);
    if (!connection.frames.take(now)) {
      this.rateLimited(connection, value);
      return undefined;
    }
    connection.limitedStreak = 0;
    if (connection.ready) return this.frameWhenReady(connection, connection.ready, value, received);
    return this.handle(connection, value, received);
  }

  private async frameWhenReady(connection: Connection, ready: Promise<void>, value: unknown, received: number) {
    await ready;
    await this.handle(connection, value, received);
  }

  private handle(connection: Connection, value: unknown, received: number): Promise<void> | undefined {
    const { config, metrics } = this.deps;
    if (value instanceof Uint8Array || value instanceof ArrayBuffer) {
      metrics.countIn("binary");
      this.replies.invalid(
        connection,
        ErrorCode.BinaryNotSupported,
        "binary frames are not supported; send JSON text",
        undefined,
      );
      return undefined;
    }
    const maxText = config.maxTextLength;
    const parsed = typeof value === "string" ? parseClientFrame(value, maxText) : validateClientFrame(value, maxText);
    if (!parsed.ok) {
      metrics.countIn("invalid");
      this.replies.invalid(connection, parsed.code, parsed.message, parsed.ref);
      return undefined;
    }
    const frame = parsed.frame;
    metrics.countIn(frame.type);
    let pending: Promise<void> | void;
    try {
      pending = dispatch(this, connection, frame);
    } catch (error) {
      this.failed(connection, frame, error);
      return undefined;
    }
    if (pending)
      return pending.then(
        () => this.handled(frame, received),
        (error) => this.failed(connection, frame, error),
      );
    this.handled(frame, received);
    return undefined;
  }

  private handled(frame: ClientFrame, received: number) {
    if (frame.type === "message" || frame.type === "direct") {
      this.deps.metrics.latency.observe((performance.now() - received) / 1000);
    }
  }

  private failed(connection: Connection, frame: ClientFrame, error: unknown) {
    if (error instanceof ChatError) {
      this.replies.error(connection, error.code, error.message, frame.ref);
      return;
    }
    this.deps.logger.error("frame handling failed", {
      connectionId: connection.id,
      userId: connection.userId,
      type: frame.type,
      error: (error as Error).message,
    });
    this.replies.error(
      connection,
      ErrorCode.Unavailable,
      "the server could not complete the request; retry",
      frame.ref,
    );
  }

  /**
   * A frame over the connection's rate: answered with `rate_limited` (temporary) and dropped. When
   * more than FRAME_BURST arrive in a row without one being accepted, the client is not slowing
   * down: it is closed with 1008.
   */
  private rateLimited(connection: Connection, value: unknown) {
    const { metrics, config } = this.deps;
    metrics.rateLimited.labels("frames").inc();
    connection.limitedStreak++;
    if (connection.limitedStreak > config.frameBurst) {
      connection.close(CloseCode.PolicyViolation, "rate limit exceeded");
      return;
    }
    // The frame is not parsed (that is the work being refused); a plain ref is still found for the answer.
    const ref = typeof value === "string" ? REF_PATTERN.exec(value)?.[1] : undefined;
    this.replies.error(
      connection,
      ErrorCode.RateLimited,
      `more than ${config.frameRate} frames per second; slow down`,
      ref,
    );
  }

  /** Fans a frame out to this instance's subscribers (one native publish) and to other instances. */
  publish(topic: string, frame: string, type: string) {
    this.delivery.publish(topic, frame, type);
  }

  /** Sends a system notice to every connection on every instance. */
  broadcast(text: string) {
    this.publish(BROADCAST_TOPIC, frames.system(text, this.now()), "system");
  }
}

const REF_PATTERN = /"ref"\s*:\s*"([^"\\]{0,64})"/;
