// The chat client: one logical connection that survives deploys, network drops and server restarts.
//
// Guarantees:
// - `send`/`sendDirect` settle exactly once: with the server's `message_response`, or rejected by an
//   `error` frame with the same ref, a full queue, or `close()` / a terminal close code.
// - A message handed to `send` is never dropped by a reconnect: it is kept and sent again on the next
//   connection with the same clientMsgId, so a server that already stored it answers with
//   `duplicate: true` instead of storing it twice. The queue is bounded by bytes and by time, not by a
//   count: a deploy's hand-over can take tens of seconds while the application keeps sending.
// - Each room message and direct message is emitted at most once, whatever the server replays.
// - Direct messages sent while the client was offline are emitted as `direct` events after it
//   reconnects: it resumes its user's inbox from the last position it holds on every connection.

import { type BackoffOptions, backoffDelay, DEFAULT_BACKOFF } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { ChatClientError, ClientErrorCode } from "./errors.js";
import { RecentKeys, randomId } from "./ids.js";
import { type InboxPosition, InboxTracker } from "./inbox.js";
import {
  CloseCode,
  type ConnectionEstablished,
  type DirectMessage,
  ErrorCode,
  type Goodbye,
  type History,
  type MessageResponse,
  type Presence,
  type PresenceDiff,
  RECONNECTABLE_CLOSE_CODES,
  type ReadReceipt,
  type RoomMessage,
  type ServerFrame,
  type SystemNotice,
  type Typing,
} from "./protocol.js";

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

export interface StateChange {
  state: ConnectionState;
  previous: ConnectionState;
  /** Close code of the socket that ended, when a socket ended. */
  code?: number;
  reason?: string;
  /** For `reconnecting`: the retry number (1 for the first) and the wait before it. */
  attempt?: number;
  delayMs?: number;
}

export interface JoinResult {
  room: string;
  epoch: string;
  /** Newest offset of the room when it was joined. */
  offset: number;
  /** True when every message missed since the last seen offset was replayed. */
  recovered: boolean;
  /** The user's stored read position in the room (shared by the user's devices); 0 when none. */
  readOffset: number;
  /** Messages after `readOffset`: the room's unread badge. */
  unread: number;
  /** True when the join was sent by the client itself after a reconnect. */
  rejoin: boolean;
}

/** The answer to an inbox resume: where the inbox stands, and whether nothing was missed. */
export interface InboxResult {
  epoch: string;
  /** The inbox's newest offset. */
  offset: number;
  /** Every direct message after the position resumed from was delivered (false: some were dropped by the server's bounds, or the epoch changed). */
  recovered: boolean;
}

export interface SentMessage {
  room: string;
  id: string;
  offset: number;
  ts: number;
  clientMsgId: string;
  /** The server had already stored this clientMsgId: an earlier attempt reached it. */
  duplicate: boolean;
}

export interface SentDirect {
  to: string;
  id: string;
  ts: number;
  clientMsgId: string;
  duplicate: boolean;
}

export interface ChatEvents {
  state: StateChange;
  established: ConnectionEstablished;
  message: RoomMessage;
  direct: DirectMessage;
  presence: Presence;
  presence_diff: PresenceDiff;
  typing: Typing;
  read: ReadReceipt;
  joined: JoinResult;
  /** The inbox was resumed on a new connection (save `client.inboxPosition` to resume after a reload). */
  inbox: InboxResult;
  /** The messages waiting for a connection changed: how many, and their size. */
  queue: { messages: number; bytes: number };
  goodbye: Goodbye;
  system: SystemNotice;
  /** An `error` frame that answers no request, or a join the client sent itself that failed. */
  error: ChatClientError;
}

/**
 * An event handler whose parameter is checked both ways (as for methods), so that the standard
 * WebSocket, whose handlers take the richer MessageEvent and CloseEvent, fits WebSocketLike.
 */
type Handler<E> = { handle(event: E): void }["handle"];

/** The part of the standard WebSocket the client uses: browsers', Bun's, Node's, or the `ws` package's. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: Handler<unknown> | null;
  onmessage: Handler<{ data: unknown }> | null;
  onclose: Handler<{ code: number; reason: string }> | null;
  onerror: Handler<unknown> | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface ConnectOptions {
  /** 8-64 characters of A-Z a-z 0-9 _ -. Reused on every reconnect so the server resumes the session. */
  connectionId: string;
  /** Sent as the `token` query parameter: browsers cannot set headers on a WebSocket. */
  token?: string;
  /** Sent as the `user` query parameter. */
  user?: string;
  /**
   * Ask for batched frames (`batch=1`): the server joins the frames of one event-loop turn into one
   * WebSocket frame, which costs both sides less per message. Default true; a server that does not
   * know the parameter sends plain frames, which are read the same way.
   */
  batch?: boolean;
  /**
   * Where the inbox was left off (kept by the application, for example across a page reload): the
   * first connection resumes from it. Without it the first connection asks for every direct message
   * the server keeps.
   */
  inbox?: InboxPosition;
  /** Wait between reconnect attempts; default 1 s to 30 s. */
  backoff?: Partial<BackoffOptions>;
  /**
   * Bytes of messages (their JSON frames, UTF-8) kept while disconnected; a send past it is rejected
   * with `queue_full`. Default 1 MiB: over a thousand typical chat messages.
   */
  maxQueueBytes?: number;
  /**
   * How long a message may wait for a connection, from the `send` call; past it the send is rejected
   * with `queue_timeout`. Default 120 s: longer than a deploy's hand-over, well within the server's
   * deduplication window (DEDUP_WINDOW, 300 s by default), so a resend is always deduplicated.
   */
  queueTimeoutMs?: number;
  /** An optional limit on the number of queued messages; none by default. */
  maxQueue?: number;
  /**
   * Pace of the queue once a connection is back: at most `burst` messages at once, then `perSecond`.
   * Default: three quarters of the frame limit the server announces in `connection_established`
   * (15/s, burst 30 under the default FRAME_RATE 20/s, FRAME_BURST 40; the same from a server that
   * does not announce it), leaving room for typing, read and ping frames, so a long queue is not
   * refused with `rate_limited` (nor the connection closed with 1008) when it is sent.
   */
  queueRate?: { perSecond: number; burst: number };
  /** Deadline of requests that are not resent (join, history, presence, ...). Default 10 s. */
  requestTimeoutMs?: number;
  /** Deadline from opening a socket to `connection_established`. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** Silence allowed past the server's heartbeat interval before the connection counts as dead. Default 10 s. */
  livenessGraceMs?: number;
  /** Message ids remembered to drop duplicates. Default 5000. */
  dedupCapacity?: number;
  /** Defaults to the global WebSocket. */
  WebSocket?: new (
    url: string,
  ) => WebSocketLike;
  random?: () => number;
}

type Kind = "resend" | "once";

interface Request {
  ref: string;
  /** Creation order: queued messages go out, and go back into the queue, in this order. */
  seq: number;
  frame: Record<string, unknown>;
  kind: Kind;
  resolve(frame: ServerFrame): void;
  reject(error: ChatClientError): void;
  timer?: ReturnType<typeof setTimeout>;
  /** For messages: the UTF-8 size of the frame, counted against maxQueueBytes while queued. */
  bytes: number;
  /** For messages: past queueTimeoutMs the message leaves the queue, or is not queued again. */
  expiry?: ReturnType<typeof setTimeout>;
  expired?: boolean;
  /** Times the server answered `unavailable` to this request. */
  refusals?: number;
}

interface RoomState {
  /** Epoch of the room as last joined; undefined until the first join is answered. */
  epoch?: string;
  /** Newest offset seen in this room. */
  offset: number;
  /** Callers of `join` waiting for the room's next join answer. */
  waiters: { resolve(result: JoinResult): void; reject(error: ChatClientError): void }[];
  /** A join for this room is on the wire. */
  joining: boolean;
  /** A join of this room was answered before: later joins are rejoins. */
  joined: boolean;
}

/** Where a room was left off: the epoch and newest offset an application kept (a reloaded page). */
export interface RoomPosition {
  epoch: string;
  offset: number;
}

const OPEN = 1;
/** Close code the client reports when it gives up on a silent connection (same meaning as the server's). */
const LOCAL_TIMEOUT = CloseCode.HeartbeatTimeout;
const CONNECTION_ID = /^[A-Za-z0-9_-]{8,64}$/;
/**
 * Queued messages unanswered at once. The server closes with 1008 after more than FRAME_BURST
 * refusals in a row (40 by default): even if every one on the wire were refused, 8 stay below it.
 */
const QUEUE_WINDOW = 8;
/** After a `rate_limited` refusal the queue waits 1 s, doubled for each refusal in a row, up to 10 s. */
const REFUSED_WAIT_MS = 1_000;
const REFUSED_WAIT_MAX_MS = 10_000;
const USER = /^.{1,64}$/su;

/** Opens a chat connection. It connects at once and keeps reconnecting until `close()`. */
export function connect(url: string, options: ConnectOptions): ChatClient {
  return new ChatClient(url, options);
}

export class ChatClient extends Emitter<ChatEvents> {
  readonly connectionId: string;
  /** The endpoint, with the current token: `authenticate` replaces it for later reconnects. */
  url: string;
  private _state: ConnectionState = "connecting";
  private _session: ConnectionEstablished | undefined;
  private ws: WebSocketLike | undefined;
  /** Failed attempts since the last established connection. */
  private failures = 0;
  private opened = false;
  private retryAfterMs: number | undefined;
  /** After a goodbye new requests wait for the next connection instead of racing the close. */
  private leaving = false;
  private terminal: { code: number; reason: string } | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private livenessTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly rooms = new Map<string, RoomState>();
  private readonly inFlight = new Map<string, Request>();
  private queue: Request[] = [];
  private queueBytes = 0;
  /** Token bucket pacing the queue; refilled on use. */
  private tokens: number;
  private tokensAt = 0;
  private pumpTimer: ReturnType<typeof setTimeout> | undefined;
  /** Waits after a refusal for the server's rate, counted since the last message it accepted. */
  private refusals = 0;
  /** A refusal's wait is running: further refusals of the same burst do not extend it. */
  private cooling = false;
  private readonly seen: RecentKeys;
  private readonly inbox: InboxTracker;
  private inboxRetry: ReturnType<typeof setTimeout> | undefined;
  private refs = 0;
  private readonly backoff: BackoffOptions;
  private readonly maxQueue: number;
  private readonly maxQueueBytes: number;
  private readonly queueTimeoutMs: number;
  /** Pace of queued sends: the option, else derived from the limits the server announces. */
  private queueRate: { perSecond: number; burst: number };
  private readonly queueRateFixed: boolean;
  private readonly requestTimeoutMs: number;
  private readonly handshakeTimeoutMs: number;
  private readonly livenessGraceMs: number;
  private readonly random: () => number;
  private readonly WebSocketImpl: new (
    url: string,
  ) => WebSocketLike;

  constructor(url: string, options: ConnectOptions) {
    super();
    // The server refuses these upgrades with HTTP 400, which a WebSocket cannot tell from an outage.
    if (!CONNECTION_ID.test(options.connectionId)) {
      throw new ChatClientError("invalid_connection_id", "connectionId must be 8-64 characters of A-Z a-z 0-9 _ -");
    }
    if (options.user !== undefined && !USER.test(options.user)) {
      throw new ChatClientError("invalid_user", "user must be 1-64 characters");
    }
    this.connectionId = options.connectionId;
    this.url = chatUrl(url, options);
    this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this.maxQueue = options.maxQueue ?? Number.POSITIVE_INFINITY;
    this.maxQueueBytes = options.maxQueueBytes ?? 1_048_576;
    this.queueTimeoutMs = options.queueTimeoutMs ?? 120_000;
    this.queueRate = options.queueRate ?? { perSecond: 15, burst: 30 };
    this.queueRateFixed = options.queueRate !== undefined;
    this.tokens = this.queueRate.burst;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? 10_000;
    this.livenessGraceMs = options.livenessGraceMs ?? 10_000;
    this.random = options.random ?? Math.random;
    this.seen = new RecentKeys(options.dedupCapacity ?? 5_000);
    this.inbox = new InboxTracker(options.inbox);
    const impl = options.WebSocket ?? (globalThis as { WebSocket?: new (url: string) => WebSocketLike }).WebSocket;
    if (!impl) throw new ChatClientError("no_websocket", "no WebSocket implementation: pass options.WebSocket");
    this.WebSocketImpl = impl;
    this.openSocket();
  }

  get state(): ConnectionState {
    return this._state;
  }

  /** The latest `connection_established`: user id, instance id and color of the server, ... */
  get session(): ConnectionEstablished | undefined {
    return this._session;
  }

  /** Messages waiting for a connection. */
  get queued(): number {
    return this.queue.length;
  }

  /** UTF-8 bytes of the messages waiting for a connection. */
  get queuedBytes(): number {
    return this.queueBytes;
  }

  /** Where the client is in its inbox: every direct message up to `offset` of `epoch` was received. */
  get inboxPosition(): InboxPosition | undefined {
    return this.inbox.position;
  }

  /** Rooms the client is in (or will rejoin), with the newest offset seen in each. */
  get joinedRooms(): { room: string; epoch?: string; offset: number }[] {
    return [...this.rooms].map(([room, s]) => ({ room, epoch: s.epoch, offset: s.offset }));
  }

  // ---- requests --------------------------------------------------------------------------------

  /** Sends a room message; resolves with its stored id and offset. Survives reconnects. */
  async send(room: string, text: string, clientMsgId = randomId("m")): Promise<SentMessage> {
    const a = (await this.request({ type: "message", room, text, clientMsgId }, "resend")) as unknown as SentMessage;
    return { room, id: a.id, offset: a.offset, ts: a.ts, clientMsgId, duplicate: a.duplicate === true };
  }

  /** Sends a direct message to every connection of user `to` (and the sender's other ones). */
  async sendDirect(to: string, text: string, clientMsgId = randomId("d")): Promise<SentDirect> {
    const a = (await this.request({ type: "direct", to, text, clientMsgId }, "resend")) as unknown as SentDirect;
    return { to, id: a.id, ts: a.ts, clientMsgId, duplicate: a.duplicate === true };
  }

  /**
   * Joins a room and keeps it joined across reconnects. Resolves with the room's next join answer:
   * now if connected, else after the next reconnect. With `from` (a position the application kept,
   * for example across a page reload) the server replays the messages after it as `message` events
   * before the answer; `recovered` says whether all of them could be.
   */
  join(room: string, from?: RoomPosition): Promise<JoinResult> {
    if (this.terminal) return Promise.reject(this.closedError());
    let state = this.rooms.get(room);
    if (!state) {
      state = { offset: from?.offset ?? 0, epoch: from?.epoch, waiters: [], joining: false, joined: false };
      this.rooms.set(room, state);
    }
    const result = new Promise<JoinResult>((resolve, reject) => state.waiters.push({ resolve, reject }));
    // Otherwise the join goes out with the rejoins of the next connection.
    if (this._state === "open" && !state.joining) void this.sendJoin(room, state, false);
    return result;
  }

  /** Leaves a room; it is no longer rejoined. */
  async leave(room: string): Promise<void> {
    const state = this.rooms.get(room);
    this.rooms.delete(room);
    state?.waiters.splice(0).forEach((w) => {
      w.reject(new ChatClientError("left", `left ${room} before it was joined`));
    });
    if (this._state !== "open") return;
    await this.request({ type: "leave", room }, "once");
  }

  /** Tells the room whether this user is typing. Not kept while disconnected. */
  async typing(room: string, active: boolean): Promise<void> {
    await this.request({ type: "typing", room, active }, "once");
  }

  /**
   * Tells the room that this user has read up to `offset`; the server stores it as the user's read
   * position (forward only) and resolves with the stored position (`readOffset`, 0 from a server
   * older than read positions). The user's other devices in the room get a `read` event.
   */
  async markRead(room: string, offset: number): Promise<number> {
    const answer = (await this.request({ type: "read", room, offset }, "once")) as MessageResponse;
    return typeof answer.readOffset === "number" ? answer.readOffset : 0;
  }

  async history(room: string, options: { before?: number; limit?: number } = {}): Promise<History> {
    const answer = (await this.request({ type: "history", room, ...options }, "once")) as unknown as History;
    return { room: answer.room, messages: answer.messages, hasMore: answer.hasMore };
  }

  async presence(room: string): Promise<string[]> {
    const answer = (await this.request({ type: "presence", room }, "once")) as unknown as Presence;
    return answer.members;
  }

  /**
   * Hands the server a fresh token before the current one expires (otherwise it closes with 4401),
   * and uses it for every later reconnect. Resolves with the new expiry (ms), or null without one.
   */
  async authenticate(token: string): Promise<number | null> {
    const answer = (await this.request({ type: "auth", token }, "once")) as unknown as { expiresAt: number | null };
    const url = new URL(this.url);
    url.searchParams.set("token", token);
    this.url = url.toString();
    return answer.expiresAt;
  }

  /** Round trip time to the server in milliseconds. */
  async ping(): Promise<number> {
    const started = Date.now();
    await this.request({ type: "ping" }, "once");
    return Date.now() - started;
  }

  /** Closes for good: no reconnect; every waiting request is rejected with `closed`. */
  close(): void {
    if (this.terminal) return;
    this.finish(1000, "closed by the client");
  }

  // ---- connection ------------------------------------------------------------------------------

  private openSocket() {
    this.retryTimer = undefined;
    this.setState(this.opened ? "reconnecting" : "connecting", {});
    let ws: WebSocketLike;
    try {
      ws = new this.WebSocketImpl(this.url);
    } catch {
      this.lost(1006, "the WebSocket could not be created");
      return;
    }
    this.ws = ws;
    let upgraded = false;
    ws.onopen = () => {
      upgraded = true;
    };
    this.watch(this.handshakeTimeoutMs);
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      const text = String(event.data);
      // A batched WebSocket frame holds JSON frames separated by `\n` (JSON text never holds a raw one).
      if (text.indexOf("\n") < 0) return this.onText(ws, text);
      for (const line of text.split("\n")) this.onText(ws, line);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      // A refused upgrade (a draining or full server answers 503) is a failed attempt, whatever code
      // the WebSocket implementation reports for it (browsers 1006, Bun 1002).
      if (!upgraded) return this.lost(1006, event.reason || "the connection could not be opened");
      this.lost(event.code, event.reason);
    };
    ws.onerror = () => {};
  }

  private onText(ws: WebSocketLike, text: string) {
    // A frame earlier in the same batch may have replaced or dropped this socket.
    if (this.ws !== ws) return;
    let frame: ServerFrame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    this.onFrame(frame);
  }

  /** (Re)arms the deadline for the next frame; a silent connection is dropped and retried. */
  private watch(ms: number) {
    clearTimeout(this.livenessTimer);
    this.livenessTimer = setTimeout(() => {
      const ws = this.ws;
      if (!ws) return;
      // Do not wait for a close handshake on a connection that may be half-open.
      this.ws = undefined;
      detach(ws);
      try {
        ws.close(LOCAL_TIMEOUT, "no frame from the server in time");
      } catch {}
      this.lost(LOCAL_TIMEOUT, "no frame from the server in time");
    }, ms);
  }

  private onFrame(frame: ServerFrame) {
    if (this._session) this.watch(this._session.heartbeatIntervalMs + this.livenessGraceMs);
    switch (frame.type) {
      case "connection_established":
        return void this.established(frame);
      case "message": {
        if (!this.firstSeen(frame.id, frame.from, frame.clientMsgId)) return;
        const room = this.rooms.get(frame.room);
        if (room && frame.offset > room.offset) room.offset = frame.offset;
        return this.emit("message", strip(frame));
      }
      case "epoch": {
        // The room's history started anew: a rejoin asks for replay in the new epoch.
        const room = this.rooms.get(frame.room);
        if (room) {
          room.epoch = frame.epoch;
          room.offset = frame.offset;
        }
        return;
      }
      case "direct":
        this.inbox.received(frame.epoch, frame.offset);
        if (!this.firstSeen(frame.id, frame.from, frame.clientMsgId)) return;
        return this.emit("direct", strip(frame));
      case "typing":
        return this.emit("typing", strip(frame));
      case "read":
        return this.emit("read", strip(frame));
      case "presence_diff":
        return this.emit("presence_diff", strip(frame));
      case "presence":
        this.answer(frame);
        return this.emit("presence", { room: frame.room, members: frame.members });
      case "history":
      case "pong":
      case "message_response":
        return this.answer(frame);
      case "error":
        return this.failed(frame.ref, new ChatClientError(frame.code, frame.message, frame.temporary));
      case "goodbye":
        this.leaving = true;
        if (frame.reconnect) this.retryAfterMs = frame.retryAfterMs;
        else this.terminal ??= { code: CloseCode.ServiceRestart, reason: `goodbye: ${frame.reason}` };
        return this.emit("goodbye", strip(frame));
      case "system":
        return this.emit("system", strip(frame));
    }
  }

  /** True the first time a message is seen, by server id and by sender + clientMsgId. */
  private firstSeen(id: string, from: string, clientMsgId: string): boolean {
    // The second key catches a resend that a restarted server without shared dedup stored again.
    const byId = this.seen.add(`i:${id}`);
    const byClient = this.seen.add(`c:${from}\u0000${clientMsgId}`);
    return byId && byClient;
  }

  private async established(frame: ConnectionEstablished) {
    const ws = this.ws;
    const session: ConnectionEstablished = strip(frame as ConnectionEstablished & { type: string });
    this._session = session;
    if (!this.queueRateFixed && frame.frameRate && frame.frameBurst) {
      // Three quarters of what the server allows leaves room for the app's own frames (typing,
      // read, join) while the queue drains, so the queue is never refused for its rate.
      this.queueRate = {
        perSecond: Math.max(1, Math.floor(frame.frameRate * 0.75)),
        burst: Math.max(1, Math.floor(frame.frameBurst * 0.75)),
      };
      this.tokens = Math.min(this.tokens, this.queueRate.burst);
    }
    this.watch(frame.heartbeatIntervalMs + this.livenessGraceMs);
    this.opened = true;
    this.failures = 0;
    this.retryAfterMs = undefined;
    this.leaving = false;
    this.emit("established", session);
    // A resumed session may hold rooms this client has left meanwhile.
    for (const room of frame.rooms ?? []) {
      if (!this.rooms.has(room)) this.transmit({ type: "leave", room });
    }
    // Rejoin before sending anything else: a restarted server knows none of our rooms.
    const rejoins = [...this.rooms].map(([room, state]) => this.sendJoin(room, state, state.joined));
    // The inbox resume goes out with the rejoins; nothing waits for it (`open` means the rooms are back).
    void this.resumeInbox(ws, 0);
    await Promise.allSettled(rejoins);
    if (this.ws !== ws || this.terminal) return;
    // Rooms joined by the application while the rejoins were on the wire.
    for (const [room, state] of this.rooms)
      if (state.waiters.length > 0 && !state.joining) void this.sendJoin(room, state, state.joined);
    this.setState("open", {});
    this.flush();
  }

  /**
   * Asks for the direct messages after the inbox position. Refused for a while (`unavailable`: the
   * server's storage is down), it is asked again with the reconnect backoff, on the same connection.
   */
  private resumeInbox(ws: WebSocketLike | undefined, attempt: number, recovered = true): Promise<void> {
    return this.request(this.inbox.resumeFrame(), "once").then(
      (answer) => {
        const result = answer as unknown as InboxResult & { more?: boolean; through?: number };
        if (this.ws !== ws) return;
        const whole = recovered && result.recovered;
        // A long replay comes in pages: ask for the next one from where this one ended.
        if (result.more && result.through !== undefined) {
          this.inbox.answered(result.epoch, result.through);
          return this.resumeInbox(ws, 0, whole);
        }
        this.inbox.answered(result.epoch, result.offset);
        this.emit("inbox", { epoch: result.epoch, offset: result.offset, recovered: whole });
      },
      (error: ChatClientError) => {
        if (this.ws !== ws || this.terminal) return;
        if (error.code === ClientErrorCode.ConnectionLost || error.code === ClientErrorCode.Closed) return;
        // A server older than inboxes does not know the frame: direct messages still arrive live.
        if (error.code === ErrorCode.UnknownType) return;
        this.emit("error", error);
        if (!error.temporary) return;
        clearTimeout(this.inboxRetry);
        this.inboxRetry = setTimeout(
          () => {
            if (this.ws === ws && !this.terminal) void this.resumeInbox(ws, attempt + 1);
          },
          backoffDelay(attempt + 1, this.backoff, this.random),
        );
      },
    );
  }

  private sendJoin(room: string, state: RoomState, rejoin: boolean, catchUp = false): Promise<void> {
    const frame: Record<string, unknown> = { type: "join", room };
    if (state.epoch !== undefined) {
      frame.lastOffset = state.offset;
      frame.epoch = state.epoch;
    }
    state.joining = true;
    return this.request(frame, "once").then(
      (answer) => {
        state.joining = false;
        const result = answer as unknown as JoinResult;
        if (this.rooms.get(room) !== state) return;
        const reset = state.epoch !== undefined && result.epoch !== state.epoch;
        state.epoch = result.epoch;
        state.joined = true;
        if (reset && !catchUp) {
          // The room started anew (a restarted server without shared history): what it holds is all
          // new to us, so ask for it from the start. Messages already shown are dropped as duplicates.
          state.offset = 0;
          return this.sendJoin(room, state, rejoin, true);
        }
        if (!result.recovered) state.offset = Math.max(result.offset, reset ? 0 : state.offset);
        const joined: JoinResult = {
          room,
          epoch: result.epoch,
          offset: result.offset,
          recovered: result.recovered,
          // A server older than read positions sends neither.
          readOffset: result.readOffset ?? 0,
          unread: result.unread ?? 0,
          rejoin,
        };
        for (const w of state.waiters.splice(0)) w.resolve(joined);
        this.emit("joined", joined);
      },
      (error: ChatClientError) => {
        state.joining = false;
        // A lost connection is retried by the next rejoin; the server refusing the room is final.
        if (error.code === ClientErrorCode.ConnectionLost || error.code === ClientErrorCode.Closed) return;
        if (this.rooms.get(room) === state) this.rooms.delete(room);
        for (const w of state.waiters.splice(0)) w.reject(error);
        if (rejoin) this.emit("error", error);
      },
    );
  }

  private lost(code: number, reason: string) {
    clearTimeout(this.livenessTimer);
    clearTimeout(this.inboxRetry);
    this.inbox.disconnected();
    if (this.ws) detach(this.ws);
    this.ws = undefined;
    // Answers to what was in flight will not come: resend messages, fail the rest.
    const resend: Request[] = [];
    for (const request of this.inFlight.values()) {
      clearTimeout(request.timer);
      if (request.kind === "resend") resend.push(request);
      else
        request.reject(
          new ChatClientError(ClientErrorCode.ConnectionLost, "the connection dropped before the answer", true),
        );
    }
    this.inFlight.clear();
    const back = resend.filter((request) => {
      if (!request.expired) return true;
      request.reject(this.expiredError(request));
      return false;
    });
    if (back.length > 0) this.setQueue([...back, ...this.queue]);
    if (this.terminal) return this.finish(this.terminal.code, this.terminal.reason);
    if (!RECONNECTABLE_CLOSE_CODES.has(code)) return this.finish(code, reason);
    const delayMs = this.retryAfterMs ?? backoffDelay(this.failures, this.backoff, this.random);
    this.retryAfterMs = undefined;
    this.failures++;
    this.setState("reconnecting", { code, reason, attempt: this.failures, delayMs });
    this.retryTimer = setTimeout(() => this.openSocket(), delayMs);
  }

  private finish(code: number, reason: string) {
    this.terminal ??= { code, reason };
    clearTimeout(this.retryTimer);
    clearTimeout(this.pumpTimer);
    clearTimeout(this.inboxRetry);
    clearTimeout(this.livenessTimer);
    const ws = this.ws;
    this.ws = undefined;
    if (ws) {
      detach(ws);
      try {
        ws.close(1000, "client closed");
      } catch {}
    }
    const error = this.closedError();
    for (const request of [...this.inFlight.values(), ...this.queue]) {
      clearTimeout(request.timer);
      request.reject(error);
    }
    this.inFlight.clear();
    this.setQueue([]);
    for (const state of this.rooms.values()) for (const w of state.waiters.splice(0)) w.reject(error);
    this.setState("closed", { code, reason });
  }

  private closedError() {
    const t = this.terminal;
    return new ChatClientError(
      ClientErrorCode.Closed,
      t ? `the client is closed (${t.code}${t.reason ? `: ${t.reason}` : ""})` : "the client is closed",
    );
  }

  private setState(state: ConnectionState, detail: Omit<StateChange, "state" | "previous">) {
    const previous = this._state;
    if (previous === state && state !== "reconnecting") return;
    // `reconnecting` is announced once per failed attempt, with that attempt's wait.
    if (previous === state && detail.delayMs === undefined) return;
    this._state = state;
    this.emit("state", { state, previous, ...detail });
  }

  // ---- request plumbing ------------------------------------------------------------------------

  private request(frame: Record<string, unknown>, kind: Kind): Promise<ServerFrame> {
    if (this.terminal) return Promise.reject(this.closedError());
    return new Promise<ServerFrame>((resolve, reject) => {
      const seq = ++this.refs;
      const request: Request = {
        ref: `q${seq}`,
        seq,
        frame,
        kind,
        bytes: 0,
        resolve: (answer) => {
          clearTimeout(request.expiry);
          resolve(answer);
        },
        reject: (error) => {
          clearTimeout(request.expiry);
          reject(error);
        },
      };
      const live = this.ws?.readyState === OPEN && this._session !== undefined && !this.leaving;
      if (kind === "resend") {
        request.bytes = utf8Length(JSON.stringify(frame));
        request.expiry = setTimeout(() => this.expire(request), this.queueTimeoutMs);
      }
      // Queued messages go out after the rejoins, in order, and a new message waits behind them;
      // other requests need not wait.
      if (live && kind === "once") return this.dispatch(request);
      if (live && this._state === "open" && this.queue.length === 0) return this.dispatch(request);
      if (kind === "once") {
        return reject(
          new ChatClientError(
            ClientErrorCode.NotConnected,
            `not connected: ${String(frame.type)} is not kept for later`,
            true,
          ),
        );
      }
      const full =
        this.queue.length >= this.maxQueue
          ? `${this.maxQueue} messages are already waiting for a connection`
          : this.queueBytes + request.bytes > this.maxQueueBytes
            ? `${this.queueBytes} bytes of messages are already waiting for a connection (maxQueueBytes ${this.maxQueueBytes})`
            : undefined;
      if (full) return request.reject(new ChatClientError(ClientErrorCode.QueueFull, full, true));
      this.setQueue([...this.queue, request]);
    });
  }

  /** A message past queueTimeoutMs: taken out of the queue now, or not queued again if it is on the wire. */
  private expire(request: Request) {
    request.expired = true;
    if (!this.queue.includes(request)) return;
    this.setQueue(this.queue.filter((r) => r !== request));
    request.reject(this.expiredError(request));
  }

  private expiredError(request: Request) {
    return new ChatClientError(
      ClientErrorCode.QueueTimeout,
      `no connection took ${String(request.frame.type)} ${String(request.frame.clientMsgId)} within ${this.queueTimeoutMs} ms`,
      true,
    );
  }

  private setQueue(queue: Request[]) {
    const changed = queue.length !== this.queue.length;
    this.queue = queue;
    this.queueBytes = queue.reduce((sum, r) => sum + r.bytes, 0);
    if (changed) this.emit("queue", { messages: queue.length, bytes: this.queueBytes });
  }

  private dispatch(request: Request) {
    this.inFlight.set(request.ref, request);
    if (request.kind === "once") {
      request.timer = setTimeout(() => {
        this.inFlight.delete(request.ref);
        request.reject(
          new ChatClientError(
            ClientErrorCode.Timeout,
            `no answer to ${String(request.frame.type)} within ${this.requestTimeoutMs} ms`,
            true,
          ),
        );
      }, this.requestTimeoutMs);
    }
    this.transmit({ ...request.frame, ref: request.ref });
  }

  private transmit(frame: Record<string, unknown>) {
    try {
      this.ws?.send(JSON.stringify(frame));
    } catch {
      // The close event follows and moves the request back to the queue.
    }
  }

  /**
   * Sends queued messages, in order, as fast as the queue's token bucket allows and with at most
   * QUEUE_WINDOW of them unanswered; each answer calls it again.
   */
  private flush() {
    clearTimeout(this.pumpTimer);
    this.pumpTimer = undefined;
    this.cooling = false;
    if (this._state !== "open" || this.ws?.readyState !== OPEN || this.leaving) return;
    const { perSecond, burst } = this.queueRate;
    let onWire = 0;
    for (const request of this.inFlight.values()) if (request.kind === "resend") onWire++;
    let taken = 0;
    while (taken < this.queue.length && onWire < QUEUE_WINDOW) {
      const now = Date.now();
      this.tokens = Math.min(burst, this.tokens + ((now - this.tokensAt) / 1000) * perSecond);
      this.tokensAt = now;
      if (this.tokens < 1) {
        this.pumpTimer = setTimeout(() => this.flush(), Math.ceil(((1 - this.tokens) / perSecond) * 1000));
        break;
      }
      this.tokens -= 1;
      taken++;
      onWire++;
    }
    if (taken === 0) return;
    const batch = this.queue.slice(0, taken);
    this.setQueue(this.queue.slice(taken));
    for (const request of batch) this.dispatch(request);
  }

  private answer(frame: { ref?: string } & ServerFrame) {
    if (frame.ref === undefined) return;
    const request = this.inFlight.get(frame.ref);
    if (!request) return;
    this.inFlight.delete(frame.ref);
    clearTimeout(request.timer);
    request.resolve(frame);
    if (request.kind === "resend") this.refusals = 0;
    if (request.kind === "resend" && this.queue.length > 0 && this.pumpTimer === undefined) this.flush();
  }

  private failed(ref: string | undefined, error: ChatClientError) {
    const request = ref === undefined ? undefined : this.inFlight.get(ref);
    if (!request) return this.emit("error", error);
    if (request.kind === "resend" && error.code === "unavailable" && !request.expired) {
      // The server could not store the message yet (its storage is unreachable). It stays in flight
      // and is sent again, same clientMsgId, after a backoff: the server's dedup stores it once. A
      // lost connection moves it to the queue like any message in flight; closing rejects it.
      request.refusals = (request.refusals ?? 0) + 1;
      request.timer = setTimeout(
        () => this.transmit({ ...request.frame, ref: request.ref }),
        backoffDelay(request.refusals - 1, this.backoff, this.random),
      );
      return;
    }
    this.inFlight.delete(request.ref);
    clearTimeout(request.timer);
    // The server did not process it: the message goes back to the head of the queue, which waits
    // for the bucket to refill instead of being refused again (many refusals in a row close 1008).
    // The server's limit is lower than the queue's pace: waiting a whole second (longer after each
    // refusal in a row) lets its bucket refill whatever its rate.
    if (error.code === ErrorCode.RateLimited && request.kind === "resend" && !request.expired) {
      // Back in its place: refusals of one burst come back one by one, in the order they were sent.
      this.setQueue([request, ...this.queue].sort((a, b) => a.seq - b.seq));
      if (this.cooling) return;
      this.cooling = true;
      this.tokens = 0;
      this.tokensAt = Date.now();
      this.refusals++;
      clearTimeout(this.pumpTimer);
      const wait = Math.min(REFUSED_WAIT_MAX_MS, REFUSED_WAIT_MS * 2 ** (this.refusals - 1));
      this.pumpTimer = setTimeout(() => this.flush(), wait);
      return;
    }
    request.reject(error);
    if (request.kind === "resend" && this.queue.length > 0 && this.pumpTimer === undefined) this.flush();
  }
}

/** The endpoint for a base URL: http(s) becomes ws(s), and /ws/chat/<connectionId> is appended. */
function chatUrl(base: string, options: ConnectOptions): string {
  const url = new URL(base);
  if (url.protocol === "http:") url.protocol = "ws:";
  if (url.protocol === "https:") url.protocol = "wss:";
  let path = url.pathname.replace(/\/+$/, "");
  if (!path.endsWith("/ws/chat")) path += "/ws/chat";
  url.pathname = `${path}/${encodeURIComponent(options.connectionId)}`;
  if (options.user !== undefined) url.searchParams.set("user", options.user);
  if (options.token !== undefined) url.searchParams.set("token", options.token);
  if (options.batch !== false) url.searchParams.set("batch", "1");
  return url.toString();
}

function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    // A surrogate pair (4 bytes in UTF-8) counts 2 + 2 here.
    else if (c >= 0xd800 && c < 0xe000) bytes += 2;
    else bytes += 3;
  }
  return bytes;
}

function detach(ws: WebSocketLike) {
  ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
}

/** A server frame without its `type` (and `ref`), as handed to listeners. */
// biome-ignore lint/suspicious/noExplicitAny: each listener is typed by the event map; the frame was already checked by its type.
function strip<T extends { type?: unknown; ref?: unknown }>(frame: T): any {
  const { type: _type, ref: _ref, ...rest } = frame;
  return rest;
}
