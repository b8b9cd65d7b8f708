// A WebSocket test client with an inbox: frames are buffered as they arrive, and `next` waits for
// the first matching one with a deadline, so a missing frame fails fast with what did arrive.

import { SilentSocket } from "./silent-socket";

export type Frame = { type: string; [key: string]: any };
type Match = string | ((frame: Frame) => boolean);

export class TestClient {
  readonly frames: Frame[] = [];
  private cursor = 0;
  private waiters: (() => void)[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly opened: Promise<void>;
  private refs = 0;

  /** Every WebSocket frame received, as text: a batched connection gets several frames in one. */
  readonly wire: string[] = [];

  constructor(readonly ws: WebSocket) {
    ws.onmessage = (event) => {
      const text = String(event.data);
      this.wire.push(text);
      // A batch holds JSON frames separated by `\n`; a plain frame never holds a raw newline.
      for (const line of text.split("\n")) this.frames.push(JSON.parse(line));
      this.wake();
    };
    this.opened = new Promise((resolve, reject) => {
      ws.addEventListener("open", () => resolve(), { once: true });
      ws.addEventListener("error", () => reject(new Error("websocket failed to open")), { once: true });
    });
    this.closed = new Promise((resolve) => {
      ws.addEventListener("close", (e) => {
        resolve({ code: e.code, reason: e.reason });
        this.wake();
      });
    });
  }

  static async connect(url: string, options: { waitEstablished?: boolean } = {}) {
    const client = new TestClient(new WebSocket(url));
    await client.opened;
    if (options.waitEstablished !== false) await client.next("connection_established");
    return client;
  }

  /** A client that never answers WebSocket pings, as a frozen peer would not. */
  static async connectWithoutPong(url: string) {
    const socket = new SilentSocket(url);
    const client = new TestClient(socket as unknown as WebSocket);
    socket.onping = () => client.wake();
    await client.opened;
    await client.next("connection_established");
    return Object.assign(client, { pings: () => socket.pings });
  }

  private wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  send(frame: unknown) {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  /** The next frame (after those already taken) matching a type or predicate; skipped frames stay. */
  async next(match: Match, timeoutMs = 3000): Promise<Frame> {
    const test = typeof match === "string" ? (f: Frame) => f.type === match : match;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = this.cursor; i < this.frames.length; i++) {
        const frame = this.frames[i]!;
        if (test(frame)) {
          this.frames.splice(i, 1);
          return frame;
        }
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        const seen = this.frames
          .slice(-10)
          .map((f) => JSON.stringify(f))
          .join("\n  ");
        throw new Error(
          `no frame matching ${typeof match === "string" ? match : "predicate"} within ${timeoutMs} ms; last frames:\n  ${seen}`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Sends a frame with a fresh ref and resolves with the answer carrying that ref. */
  async request(frame: Record<string, unknown>, timeoutMs = 3000): Promise<Frame> {
    const ref = `r${++this.refs}`;
    this.send({ ...frame, ref });
    return this.next((f) => f.ref === ref, timeoutMs);
  }

  /**
   * Round-trips a ping. The server answers in order, so every frame it sent this socket before
   * reading the ping has arrived when this resolves: a barrier for "nothing else came".
   */
  async sync() {
    await this.request({ type: "ping" });
  }

  /** Frames of a type received so far and not yet taken. */
  all(type: string) {
    return this.frames.filter((f) => f.type === type);
  }

  /** Asserts that no frame matching arrives within `ms`. */
  async expectNone(match: Match, ms = 200) {
    try {
      const f = await this.next(match, ms);
      throw new Error(`unexpected frame ${JSON.stringify(f)}`);
    } catch (error) {
      if ((error as Error).message.startsWith("unexpected frame")) throw error;
    }
  }

  close(code = 1000) {
    this.ws.close(code);
    return this.closed;
  }
}
