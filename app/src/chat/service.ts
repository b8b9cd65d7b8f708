import { randomUUIDv7 } from "bun";
import { AuthError, type Authenticator, type Identity, mayEnter } from "../auth/auth";
import type { Backplane, Envelope } from "../backplane/backplane";
import type { Config } from "../config";
import { Connection, type RoomMembership as Membership, type Socket } from "../connections/connection";
import type { ConnectionRegistry } from "../connections/registry";
import type { DedupStore } from "../dedup/dedup";
import type { HistoryStore } from "../history/history";
import { TokenBucket } from "../limits/token-bucket";
import type { Logger } from "../observability/logger";
import type { Metrics } from "../observability/metrics";
import type { PresenceStore } from "../presence/presence";
import { type ClientFrame, type FrameOf, parseClientFrame, validateClientFrame } from "../protocol/client-frames";
import { CloseCode, ErrorCode, INVALID_FRAME_LIMIT, INVALID_FRAME_WINDOW_MS } from "../protocol/codes";
import { frames } from "../protocol/server-frames";
import type { LocalPublisher, RoomManager } from "../rooms/rooms";
import { BROADCAST_TOPIC, roomTopic, userTopic } from "../rooms/topics";
import type { SessionStore } from "../sessions/sessions";
import { ChatError } from "./errors";
import { RoomSequencer } from "./sequencer";

export interface ChatDeps {
  config: Readonly<Config>;
  registry: ConnectionRegistry;
  rooms: RoomManager;
  history: HistoryStore;
  presence: PresenceStore;
  sessions: SessionStore;
  dedup: DedupStore;
  backplane: Backplane;
  local: LocalPublisher;
  metrics: Metrics;
  logger: Logger;
  /** Verifies tokens of `auth` frames; undefined when no JWT secret or JWKS is configured. */
  authenticator?: Authenticator;
  now?: () => number;
}

/**
 * The chat protocol: what each client frame does, and what happens when a connection opens and
 * closes. Transport-agnostic: it is handed sockets and text, and publishes through `local` and the
 * backplane.
 */
export class ChatService {
  private readonly now: () => number;
  /** Orders room messages from every instance; its last offset is what members here have been sent. */
  readonly sequencer: RoomSequencer;

  constructor(private readonly deps: ChatDeps) {
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
    deps.backplane.onEnvelope((envelope) => this.deliverRemote(envelope));
    deps.presence.onExpired((room, userIds) =>
      this.publish(roomTopic(room), frames.presenceDiff(room, [], userIds), "presence_diff"),
    );
    void deps.backplane.subscribe(BROADCAST_TOPIC).catch(() => {});
  }

  /** Called when this instance no longer carries a topic: a room's order is re-learnt on rejoin. */
  released(topic: string) {
    if (topic.startsWith("room:")) this.sequencer.forget(topic.slice(5));
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  /**
   * Registers a newly opened socket. A live connection with the same id is replaced (closed with
   * 4001) and its rooms carry over; otherwise a saved session of the same user is resumed.
   */
  open(socket: Socket, connectionId: string, identity: Identity): Connection {
    const { config, registry, metrics } = this.deps;
    const { userId } = identity;
    const now = this.now();
    const connection = new Connection(connectionId, userId, socket, now, config.heartbeatIntervalMs);
    connection.roles = identity.roles;
    connection.expiresAt = identity.expiresAt;
    const previous = registry.get(connectionId);
    let handedOver: Map<string, Membership> | undefined;
    if (previous) {
      if (previous.userId === userId) {
        // Same user, same connectionId: the rooms move over without a presence change.
        handedOver = new Map(previous.rooms);
        previous.replaced = true;
        registry.remove(previous);
        for (const room of handedOver.keys()) this.deps.rooms.remove(previous, roomTopic(room));
        if (this.deps.backplane.distributed) this.deps.rooms.release(userTopic(userId));
      }
      previous.close(CloseCode.Replaced, "replaced by a newer connection");
    }
    registry.add(connection);
    metrics.connections.set(registry.size);
    connection.ready = this.establish(connection, handedOver).finally(() => {
      connection.ready = undefined;
    });
    return connection;
  }

  /** Rejoins handed-over or resumed rooms, then sends `connection_established`. */
  private async establish(connection: Connection, handedOver: Map<string, Membership> | undefined) {
    const { config, logger } = this.deps;
    const { socket, id: connectionId, userId } = connection;
    let resumed = false;
    try {
      if (handedOver) {
        resumed = true;
        for (const [room, membership] of handedOver) {
          connection.rooms.set(room, membership);
          await this.deps.rooms.add(connection, roomTopic(room));
        }
      } else {
        const session = await this.deps.sessions.take(connectionId);
        if (session && session.userId === userId) {
          resumed = true;
          for (const room of Object.keys(session.rooms)) await this.enterRoom(connection, room);
        }
      }
    } catch (error) {
      logger.warn("session resume failed", { connectionId, userId, error: (error as Error).message });
    }
    if (connection.closing) return;
    // Only other instances need to know this user is here: a single instance skips the entry.
    if (this.deps.backplane.distributed) await this.deps.rooms.acquire(userTopic(userId));
    socket.send(
      frames.connectionEstablished({
        connectionId,
        userId,
        instanceId: config.instanceId,
        color: config.color,
        version: config.version,
        heartbeatIntervalMs: config.heartbeatIntervalMs,
        resumed,
        rooms: [...connection.rooms.keys()],
      }),
    );
    logger.debug("connection opened", { connectionId, userId, resumed });
  }

  /** Releases what the connection held and saves its session for SESSION_TTL. */
  async close(connection: Connection, code: number): Promise<void> {
    const { registry, metrics, logger, config } = this.deps;
    connection.closing = true;
    if (connection.ready) await connection.ready;
    metrics.disconnects.labels(String(code)).inc();
    metrics.connectionDuration.observe((this.now() - connection.openedAt) / 1000);
    registry.remove(connection);
    metrics.connections.set(registry.size);
    if (connection.replaced) return;

    const memberships = connection.rooms;
    const sessionRooms: Record<string, { epoch: string; offset: number }> = {};
    for (const [room, membership] of memberships) {
      sessionRooms[room] = {
        epoch: membership.epoch,
        offset: this.sequencer.last(room, membership.epoch) ?? membership.liveFrom,
      };
    }
    if (this.deps.backplane.distributed) this.deps.rooms.release(userTopic(connection.userId));
    try {
      for (const room of memberships.keys()) await this.leaveRoom(connection, room);
      await this.deps.sessions.save(
        connection.id,
        { userId: connection.userId, rooms: sessionRooms },
        config.sessionTtlSeconds,
      );
    } catch (error) {
      logger.warn("releasing a closed connection failed", {
        connectionId: connection.id,
        userId: connection.userId,
        error: (error as Error).message,
      });
    }
    logger.debug("connection closed", { connectionId: connection.id, userId: connection.userId, code });
  }

  pong(connection: Connection) {
    connection.lastSeenAt = this.now();
  }

  // ---- frames ----------------------------------------------------------------------------------

  /** Handles one raw client frame. Never throws: every failure becomes an `error` frame. */
  /**
   * Handles one client frame: text, or a value the framework already parsed from JSON text.
   * Never throws: every failure becomes an `error` frame.
   */
  async frame(connection: Connection, value: unknown): Promise<void> {
    const received = performance.now();
    const now = this.now();
    connection.lastSeenAt = now;
    connection.lastFrameAt = now;
    // Created on the first frame: an idle connection never pays for its bucket.
    connection.frames ??= new TokenBucket(this.deps.config.frameRate, this.deps.config.frameBurst, now);
    if (!connection.frames.take(now)) return this.rateLimited(connection, value);
    connection.limitedStreak = 0;
    if (connection.ready) await connection.ready;
    if (value instanceof Uint8Array || value instanceof ArrayBuffer) {
      this.deps.metrics.countIn("binary");
      return this.invalid(
        connection,
        ErrorCode.BinaryNotSupported,
        "binary frames are not supported; send JSON text",
        undefined,
      );
    }
    const maxText = this.deps.config.maxTextLength;
    const parsed = typeof value === "string" ? parseClientFrame(value, maxText) : validateClientFrame(value, maxText);
    if (!parsed.ok) {
      this.deps.metrics.countIn("invalid");
      return this.invalid(connection, parsed.code, parsed.message, parsed.ref);
    }
    const frame = parsed.frame;
    this.deps.metrics.countIn(frame.type);
    try {
      await this.dispatch(connection, frame);
      if (frame.type === "message" || frame.type === "direct") {
        this.deps.metrics.latency.observe((performance.now() - received) / 1000);
      }
    } catch (error) {
      if (error instanceof ChatError) return this.sendError(connection, error.code, error.message, frame.ref);
      this.deps.logger.error("frame handling failed", {
        connectionId: connection.id,
        userId: connection.userId,
        type: frame.type,
        error: (error as Error).message,
      });
      this.sendError(connection, ErrorCode.Unavailable, "the server could not complete the request; retry", frame.ref);
    }
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
    this.sendError(
      connection,
      ErrorCode.RateLimited,
      `more than ${config.frameRate} frames per second; slow down`,
      ref,
    );
  }

  private dispatch(connection: Connection, frame: ClientFrame): Promise<void> | void {
    switch (frame.type) {
      case "auth":
        return this.auth(connection, frame);
      case "join":
        return this.join(connection, frame);
      case "leave":
        return this.leave(connection, frame);
      case "message":
        return this.message(connection, frame);
      case "direct":
        return this.direct(connection, frame);
      case "typing":
        return this.typing(connection, frame);
      case "read":
        return this.read(connection, frame);
      case "history":
        return this.history(connection, frame);
      case "presence":
        return this.presence(connection, frame);
      case "ping":
        connection.socket.send(frames.pong(this.now(), frame.ref));
        this.deps.metrics.countOut("pong");
        return;
    }
  }

  /** A fresh token before the current one expires; it must name the same user. */
  private async auth(connection: Connection, frame: FrameOf<"auth">) {
    const { authenticator } = this.deps;
    if (!authenticator) throw new ChatError(ErrorCode.Forbidden, "this server does not use tokens");
    let identity: Identity;
    try {
      identity = await authenticator.verify(frame.token);
    } catch (error) {
      throw new ChatError(
        ErrorCode.InvalidToken,
        error instanceof AuthError ? error.message : "the token is not valid",
      );
    }
    if (identity.userId !== connection.userId)
      throw new ChatError(ErrorCode.Forbidden, "the token belongs to another user");
    connection.roles = identity.roles;
    connection.expiresAt = identity.expiresAt;
    this.respond(connection, "auth", frame.ref, { expiresAt: identity.expiresAt ?? null });
  }

  private async join(connection: Connection, frame: FrameOf<"join">) {
    const { room } = frame;
    if (!mayEnter(room, connection.roles, this.deps.config.restrictedRoomPrefixes)) {
      throw new ChatError(ErrorCode.Forbidden, `room ${room} needs the ${room.slice(0, room.indexOf(":"))} role`);
    }
    const memberships = connection.rooms;
    let membership = memberships.get(room);
    if (!membership) {
      if (memberships.size >= this.deps.config.maxRoomsPerConnection) {
        throw new ChatError(
          ErrorCode.TooManyRooms,
          `a connection may join at most ${this.deps.config.maxRoomsPerConnection} rooms`,
        );
      }
      membership = await this.enterRoom(connection, room);
    }
    let recovered = false;
    if (frame.lastOffset !== undefined) {
      const replay = await this.deps.history.since(room, frame.lastOffset, frame.epoch);
      recovered = replay.complete && replay.epoch === membership.epoch;
      if (recovered) {
        // Messages above liveFrom were (or will be) delivered by publish: replaying them would duplicate.
        for (const message of replay.messages) {
          if (message.offset > membership.liveFrom) break;
          connection.socket.send(frames.message(message));
        }
      }
      this.deps.metrics.resumes.labels(String(recovered)).inc();
    }
    const head = await this.deps.history.head(room);
    this.respond(connection, "join", frame.ref, { room, epoch: head.epoch, offset: head.offset, recovered });
  }

  private async enterRoom(connection: Connection, room: string): Promise<Membership> {
    const memberships = connection.rooms;
    // Placeholder first so a concurrent frame sees the membership; filled in once the head is known.
    const membership: Membership = { epoch: "", liveFrom: 0 };
    memberships.set(room, membership);
    // What this instance had delivered when the socket subscribed: everything after it reaches the
    // socket live, including what arrives while the head is being read, so a replay stops there.
    const atSubscribe = this.sequencer.state(room);
    await this.deps.rooms.add(connection, roomTopic(room));
    let head: Awaited<ReturnType<HistoryStore["head"]>>;
    try {
      head = await this.deps.history.head(room);
    } catch (error) {
      // History unreachable: the join is refused (`unavailable`), so the connection is not left in
      // a room it has no position in.
      memberships.delete(room);
      this.deps.rooms.remove(connection, roomTopic(room));
      throw error;
    }
    membership.epoch = head.epoch;
    if (atSubscribe && atSubscribe.epoch === head.epoch) {
      membership.liveFrom = atSubscribe.last;
    } else {
      // New to this instance: tracking starts at the stored head, or began during the wait with
      // the first message delivered live.
      this.sequencer.track(room, head.epoch, head.offset);
      const now = this.sequencer.state(room)!;
      membership.liveFrom = Math.min(now.from, head.offset);
    }
    if (await this.deps.presence.add(room, connection.userId, connection.id)) {
      this.publish(roomTopic(room), frames.presenceDiff(room, [connection.userId], []), "presence_diff");
    }
    return membership;
  }

  private async leave(connection: Connection, frame: FrameOf<"leave">) {
    if (!connection.rooms.has(frame.room)) throw notInRoom(frame.room);
    await this.leaveRoom(connection, frame.room);
    this.respond(connection, "leave", frame.ref, { room: frame.room });
  }

  private async leaveRoom(connection: Connection, room: string) {
    connection.rooms.delete(room);
    this.deps.rooms.remove(connection, roomTopic(room));
    if (await this.deps.presence.remove(room, connection.userId, connection.id)) {
      this.publish(roomTopic(room), frames.presenceDiff(room, [], [connection.userId]), "presence_diff");
    }
  }

  private async message(connection: Connection, frame: FrameOf<"message">) {
    const { room, text, clientMsgId } = frame;
    if (!connection.rooms.has(room)) throw notInRoom(room);
    // The store deduplicates (sender, clientMsgId) in the same step as it stores.
    const result = await this.deps.history.append({
      room,
      id: randomUUIDv7(),
      from: connection.userId,
      text,
      ts: this.now(),
      clientMsgId,
    });
    if (result.status === "pending") throw stillProcessing();
    if (result.status === "duplicate") {
      this.respond(connection, "message", frame.ref, { ...result.receipt, duplicate: true });
      return;
    }
    const { message, epoch, published } = result;
    // Published by the store (Redis): it comes back through the backplane to this instance too,
    // in offset order with everyone else's. Only while the backplane is down, deliver here.
    if (!published || this.deps.backplane.status() !== "up") {
      const payload = frames.message(message);
      this.sequencer.offer(room, epoch, message.offset, payload);
      if (!published)
        this.deps.backplane.publish({ topic: roomTopic(room), frame: payload, epoch, offset: message.offset });
    }
    this.respond(connection, "message", frame.ref, { room, id: message.id, offset: message.offset, ts: message.ts });
  }

  private async direct(connection: Connection, frame: FrameOf<"direct">) {
    const { to, text, clientMsgId } = frame;
    const answer = await this.once(connection, clientMsgId, "direct", frame.ref, async () => {
      const direct = { id: randomUUIDv7(), from: connection.userId, to, text, ts: this.now(), clientMsgId };
      const payload = frames.direct(direct);
      this.publish(userTopic(to), payload, "direct");
      // The sender's other tabs show the conversation too.
      if (to !== connection.userId) this.publish(userTopic(connection.userId), payload, "direct");
      return { to, id: direct.id, ts: direct.ts };
    });
    if (answer) this.respond(connection, "direct", frame.ref, answer);
  }

  /**
   * Runs `send` once per (user, clientMsgId) within the dedup window, for direct messages (room
   * messages are deduplicated by the history store). A repeat gets the first answer marked
   * `duplicate: true` (and undefined is returned, the answer being sent here).
   */
  private async once(
    connection: Connection,
    clientMsgId: string,
    forType: string,
    ref: string | undefined,
    send: () => Promise<Record<string, unknown>>,
  ): Promise<Record<string, unknown> | undefined> {
    const { dedup } = this.deps;
    // Room messages and direct messages are separate namespaces: reusing an id across them is no repeat.
    const key = `${forType}:${clientMsgId}`;
    const claim = await dedup.claim(connection.userId, key);
    if (!claim.claimed) {
      if (!claim.answer) throw stillProcessing();
      this.respond(connection, forType, ref, { ...claim.answer, duplicate: true });
      return undefined;
    }
    let answer: Record<string, unknown>;
    try {
      answer = await send();
    } catch (error) {
      await dedup.release(connection.userId, key).catch(() => {});
      throw error;
    }
    await dedup.remember(connection.userId, key, answer);
    return answer;
  }

  private typing(connection: Connection, frame: FrameOf<"typing">) {
    if (!connection.rooms.has(frame.room)) throw notInRoom(frame.room);
    this.publishFromSender(
      connection,
      frame.room,
      frames.typing(frame.room, connection.userId, frame.active),
      "typing",
    );
    this.respond(connection, "typing", frame.ref, { room: frame.room });
  }

  private read(connection: Connection, frame: FrameOf<"read">) {
    if (!connection.rooms.has(frame.room)) throw notInRoom(frame.room);
    this.publishFromSender(connection, frame.room, frames.read(frame.room, connection.userId, frame.offset), "read");
    this.respond(connection, "read", frame.ref, { room: frame.room, offset: frame.offset });
  }

  private async history(connection: Connection, frame: FrameOf<"history">) {
    if (!connection.rooms.has(frame.room)) throw notInRoom(frame.room);
    const { messages, hasMore } = await this.deps.history.before(frame.room, frame.before, frame.limit ?? 50);
    connection.socket.send(frames.history(frame.room, messages, hasMore, frame.ref));
    this.deps.metrics.countOut("history");
  }

  private async presence(connection: Connection, frame: FrameOf<"presence">) {
    if (!connection.rooms.has(frame.room)) throw notInRoom(frame.room);
    const members = await this.deps.presence.members(frame.room);
    connection.socket.send(frames.presence(frame.room, members, frame.ref));
    this.deps.metrics.countOut("presence");
  }

  // ---- delivery --------------------------------------------------------------------------------

  /** Fans a frame out to this instance's subscribers (one native publish) and to other instances. */
  publish(topic: string, frame: string, type: string) {
    this.deps.metrics.countOut(type, this.deliverLocal(topic, frame));
    this.deps.backplane.publish({ topic, frame });
  }

  /** Like publish, but the sending socket does not get its own typing or read frame back. */
  private publishFromSender(connection: Connection, room: string, frame: string, type: string) {
    const topic = roomTopic(room);
    connection.socket.publish(topic, frame);
    this.deps.metrics.countOut(type, Math.max(0, this.deps.local.subscriberCount(topic) - 1));
    this.deps.backplane.publish({ topic, frame });
  }

  private deliverRemote(envelope: Envelope) {
    const { metrics } = this.deps;
    if (envelope.offset !== undefined && envelope.epoch !== undefined && envelope.topic.startsWith("room:")) {
      const frame = envelope.frame ?? frames.message(envelope.message!);
      this.sequencer.offer(envelope.topic.slice(5), envelope.epoch, envelope.offset, frame);
      return;
    }
    if (envelope.frame) metrics.countOut("remote", this.deliverLocal(envelope.topic, envelope.frame));
  }

  /**
   * Delivers a frame to this instance's sockets on a topic; returns how many. Rooms use Bun's
   * native publish; a user's sockets and the broadcast go through the registry, as they have no
   * native topic (rare frames, and a topic per user costs more memory than the index).
   */
  private deliverLocal(topic: string, frame: string): number {
    const { local, registry } = this.deps;
    if (topic.startsWith("user:")) {
      const sockets = registry.forUser(topic.slice(5));
      for (const connection of sockets) connection.socket.send(frame);
      return sockets.length;
    }
    if (topic === BROADCAST_TOPIC) {
      for (const connection of registry.values()) connection.socket.send(frame);
      return registry.size;
    }
    local.publish(topic, frame);
    return local.subscriberCount(topic);
  }

  /** Sends a system notice to every connection on every instance. */
  broadcast(text: string) {
    this.publish(BROADCAST_TOPIC, frames.system(text, this.now()), "system");
  }

  // ---- answers ---------------------------------------------------------------------------------

  private respond(connection: Connection, forType: string, ref: string | undefined, result: Record<string, unknown>) {
    connection.socket.send(frames.response(forType, ref, result));
    this.deps.metrics.countOut("message_response");
  }

  private sendError(connection: Connection, code: ErrorCode, message: string, ref: string | undefined) {
    connection.socket.send(frames.error(code, message, ref));
    this.deps.metrics.errors.labels(code).inc();
    this.deps.metrics.countOut("error");
  }

  /** Answers an invalid frame; the eleventh within a minute closes the connection with 1003. */
  private invalid(connection: Connection, code: ErrorCode, message: string, ref: string | undefined) {
    this.sendError(connection, code, message, ref);
    const now = this.now();
    const recent = (connection.invalidFrames ??= []);
    while (recent.length > 0 && now - recent[0]! > INVALID_FRAME_WINDOW_MS) recent.shift();
    recent.push(now);
    if (recent.length > INVALID_FRAME_LIMIT) connection.close(CloseCode.InvalidFrames, "too many invalid frames");
  }
}

const REF_PATTERN = /"ref"\s*:\s*"([^"\\]{0,64})"/;

function notInRoom(room: string) {
  return new ChatError(ErrorCode.NotInRoom, `join ${room} first`);
}

/** A repeat of a message whose first send is still being handled (on another connection or server). */
function stillProcessing() {
  return new ChatError(ErrorCode.Unavailable, "a message with this clientMsgId is still being processed; retry");
}
