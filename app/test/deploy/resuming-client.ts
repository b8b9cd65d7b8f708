// A small chat client for the deploy test that does what protocol.md asks of a client across a
// deploy, and records everything needed to judge the hand-over:
// - on `goodbye`: stop sending, remember each room's offset and epoch, and once the socket has
//   closed and retryAfterMs has passed, reconnect to the front door with the same connectionId;
// - after `connection_established`: `join {room, lastOffset, epoch}` to get what was missed, then
//   resend every message not yet acknowledged with its original clientMsgId;
// - a connection that fails (the front door refused it, the socket dropped) is retried after 100 ms.
// It does not deduplicate what it receives: `received` counts every `message` frame by id, so a
// frame the server sent twice shows up, and `trace` says on which socket and when each came.

type Frame = { type: string; [key: string]: any };

export interface Handover {
  /** Color of the connection that said goodbye, and of the one that resumed. */
  from: string;
  to: string;
  goodbyeAt: number;
  /** The old socket closed. */
  closedAt: number;
  /** connection_established on the new socket. */
  establishedAt: number;
  /** The rejoin answered: missed messages replayed, live ones flowing. */
  resumedAt: number;
  resumed: boolean;
}

export class ResumingClient {
  /** Room message ids received, with how many times each came. */
  readonly received = new Map<string, number>();
  /** clientMsgIds seen in received frames, with the distinct message ids they came with. */
  readonly storedAs = new Map<string, Set<string>>();
  /** Acknowledged sends: clientMsgId -> message id. */
  readonly acked = new Map<string, string>();
  readonly duplicateAnswers: string[] = [];
  readonly handovers: Handover[] = [];
  readonly colors: string[] = [];
  readonly unrecovered: Frame[] = [];
  readonly errors: Frame[] = [];
  /** Sends not acknowledged yet, by clientMsgId. */
  private readonly pending = new Map<string, string>();
  /** The most sends ever waiting at once: what a client library's queue must hold (app/client: maxQueue). */
  maxPending = 0;
  private ws: WebSocket | undefined;
  private epoch: string | undefined;
  private offset = 0;
  private seenWhileJoining = 0;
  private joined = false;
  private leaving: { at: number; retryAfterMs: number; color: string; closedAt?: number } | undefined;
  /** Per received message id: on which socket and color it came, live or before the rejoin's answer. */
  readonly trace = new Map<string, string[]>();
  private sockets = 0;
  /** Connection attempts that failed since the last one that opened. */
  private failures = 0;
  private established = false;
  /** Close code and reason of every socket that ended. */
  readonly closes: string[] = [];
  private reconnecting: Omit<Handover, "resumedAt"> | undefined;
  private seq = 0;
  private stopped = false;
  private joins = 0;
  private firstJoin: { resolve: () => void; promise: Promise<void> };

  constructor(
    private readonly frontWsUrl: string,
    readonly connectionId: string,
    readonly user: string,
    readonly room: string,
  ) {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.firstJoin = { resolve, promise };
  }

  /** Connects and joins the room; resolves when the first join is answered. */
  start(): Promise<void> {
    this.connect();
    return this.firstJoin.promise;
  }

  get color(): string | undefined {
    return this.colors.at(-1);
  }

  get unacknowledged(): number {
    return this.pending.size;
  }

  /** Sends a new message now, or on the next connection when between two. */
  send() {
    const clientMsgId = `${this.connectionId}-${++this.seq}`;
    const text = `m${this.seq} from ${this.user}`;
    this.pending.set(clientMsgId, text);
    this.maxPending = Math.max(this.maxPending, this.pending.size);
    if (this.joined && !this.leaving) this.transmit(clientMsgId, text);
  }

  stop() {
    this.stopped = true;
    this.ws?.close(1000);
  }

  private transmit(clientMsgId: string, text: string) {
    if (this.ws?.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify({ type: "message", ref: `m:${clientMsgId}`, room: this.room, text, clientMsgId }));
  }

  private connect() {
    if (this.stopped) return;
    const ws = new WebSocket(`${this.frontWsUrl}/ws/chat/${this.connectionId}?user=${this.user}`);
    this.ws = ws;
    this.joined = false;
    this.sockets++;
    this.established = false;
    let opened = false;
    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (event) => this.onFrame(JSON.parse(String(event.data)) as Frame);
    ws.onclose = (event) => {
      this.closes.push(`${event.code} ${event.reason}`);
      if (this.ws !== ws || this.stopped) return;
      this.joined = false;
      if (this.leaving) this.leaving.closedAt ??= performance.now();
      // The first attempt after a goodbye waits for retryAfterMs; failed attempts back off from
      // 100 ms to 2 s with jitter.
      const wait =
        this.leaving && this.failures === 0
          ? Math.max(0, this.leaving.at + this.leaving.retryAfterMs - performance.now())
          : Math.min(2000, 100 * 2 ** this.failures) * (0.5 + Math.random() / 2);
      if (!opened) this.failures++;
      setTimeout(() => this.connect(), wait);
    };
  }

  private onFrame(frame: Frame) {
    switch (frame.type) {
      case "connection_established": {
        this.failures = 0;
        this.established = true;
        this.colors.push(frame.color);
        if (this.leaving) {
          this.reconnecting = {
            from: this.leaving.color,
            goodbyeAt: this.leaving.at,
            closedAt: this.leaving.closedAt ?? NaN,
            establishedAt: performance.now(),
            to: frame.color,
            resumed: frame.resumed,
          };
          this.leaving = undefined;
        }
        // lastOffset is what this client had when it left; live frames on the new socket may
        // already be newer, and the replay fills in between.
        const join: Frame = { type: "join", ref: `j:${++this.joins}`, room: this.room };
        if (this.epoch !== undefined) Object.assign(join, { lastOffset: this.offset, epoch: this.epoch });
        this.ws?.send(JSON.stringify(join));
        return;
      }
      case "message": {
        this.received.set(frame.id, (this.received.get(frame.id) ?? 0) + 1);
        const trace = this.trace.get(frame.id) ?? [];
        const where = this.established ? this.color : "before connection_established";
        trace.push(
          `socket ${this.sockets} (${where}) ${this.joined ? "live" : "before the rejoin answer"}, offset ${frame.offset}, lastOffset ${this.offset}`,
        );
        this.trace.set(frame.id, trace);
        const ids = this.storedAs.get(frame.clientMsgId) ?? new Set<string>();
        ids.add(frame.id);
        this.storedAs.set(frame.clientMsgId, ids);
        // Between a socket's close and the rejoin's answer the offset stays where the old socket
        // left it: that is the lastOffset the rejoin asks from.
        if (frame.room === this.room) {
          if (this.joined) this.offset = Math.max(this.offset, frame.offset);
          else this.seenWhileJoining = Math.max(this.seenWhileJoining, frame.offset);
        }
        return;
      }
      case "message_response": {
        if (frame.for === "join") return this.onJoined(frame);
        if (frame.for === "message") {
          const clientMsgId = String(frame.ref).slice(2);
          if (!this.pending.delete(clientMsgId) && !this.acked.has(clientMsgId)) return;
          if (frame.duplicate) this.duplicateAnswers.push(clientMsgId);
          this.acked.set(clientMsgId, frame.id);
        }
        return;
      }
      case "goodbye": {
        this.leaving = { at: performance.now(), retryAfterMs: frame.retryAfterMs, color: this.color ?? "?" };
        return;
      }
      case "error": {
        this.errors.push(frame);
        // A temporary failure of a send (a resend racing the first attempt): send it again.
        if (frame.temporary && typeof frame.ref === "string" && frame.ref.startsWith("m:")) {
          const clientMsgId = frame.ref.slice(2);
          setTimeout(() => {
            const text = this.pending.get(clientMsgId);
            if (text !== undefined && this.joined) this.transmit(clientMsgId, text);
          }, 100);
        }
        return;
      }
    }
  }

  private onJoined(frame: Frame) {
    if (this.epoch !== undefined && frame.recovered !== true) this.unrecovered.push(frame);
    this.offset = this.epoch === undefined ? frame.offset : Math.max(this.offset, this.seenWhileJoining);
    this.seenWhileJoining = 0;
    this.epoch = frame.epoch;
    this.joined = true;
    if (this.reconnecting) {
      const r = this.reconnecting;
      this.handovers.push({ ...r, resumedAt: performance.now() });
      this.reconnecting = undefined;
    }
    for (const [clientMsgId, text] of this.pending) this.transmit(clientMsgId, text);
    this.firstJoin.resolve();
  }
}
