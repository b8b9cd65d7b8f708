// A lean WebSocket client for load tests: answers are matched by ref in a map and frames are only
// sorted by type, so thousands of requests in flight cost no rescans (TestClient scans its inbox).

export type Frame = { type: string; [key: string]: any };

export class LoadClient {
  /** `message` frames received, in arrival order. */
  readonly messages: Frame[] = [];
  /** `epoch` frames received, with the index in `messages` they arrived before. */
  readonly epochs: (Frame & { before: number })[] = [];
  established: Frame | undefined;
  private readonly waiting = new Map<string, (frame: Frame) => void>();
  private refs = 0;
  private readonly ready: Promise<Frame>;
  readonly closed: Promise<void>;

  private constructor(
    readonly ws: WebSocket,
    readonly user: string,
    readonly connectionId: string,
  ) {
    let established: (frame: Frame) => void = () => {};
    this.ready = new Promise((resolve, reject) => {
      established = resolve;
      ws.addEventListener("error", () => reject(new Error("websocket failed to open")), { once: true });
    });
    this.closed = new Promise((resolve) => ws.addEventListener("close", () => resolve(), { once: true }));
    ws.onmessage = (event) => {
      const frame = JSON.parse(String(event.data)) as Frame;
      if (frame.type === "message" && frame.ref === undefined) this.messages.push(frame);
      else if (frame.type === "epoch") this.epochs.push({ ...frame, before: this.messages.length });
      else if (frame.type === "connection_established") {
        this.established = frame;
        established(frame);
      }
      if (typeof frame.ref === "string") {
        const resolve = this.waiting.get(frame.ref);
        this.waiting.delete(frame.ref);
        resolve?.(frame);
      }
    };
  }

  static async connect(url: string, user: string, connectionId: string) {
    const client = new LoadClient(new WebSocket(url), user, connectionId);
    await client.ready;
    return client;
  }

  /** Sends a frame with a fresh ref; resolves with its answer (or rejects after `timeoutMs`). */
  request(frame: Record<string, unknown>, timeoutMs = 10_000): Promise<Frame> {
    const ref = `r${++this.refs}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(ref);
        reject(new Error(`no answer to ${JSON.stringify(frame)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(ref, (answer) => {
        clearTimeout(timer);
        resolve(answer);
      });
      this.ws.send(JSON.stringify({ ...frame, ref }));
    });
  }

  close() {
    this.ws.close(1000);
    return this.closed;
  }
}
