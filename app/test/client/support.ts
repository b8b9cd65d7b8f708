// Helpers for the client library tests: an event recorder that waits with a deadline, and a TCP
// proxy that can cut or stall the network between a client and a real server.
import type { Socket, TCPSocketListener } from "bun";
import type { ChatClient, ChatEvents } from "../../client/index";

type EventType = keyof ChatEvents;
const EVENT_TYPES: EventType[] = [
  "state",
  "established",
  "message",
  "direct",
  "presence",
  "presence_diff",
  "typing",
  "read",
  "joined",
  "inbox",
  "queue",
  "goodbye",
  "system",
  "error",
];

export interface Recorded<K extends EventType = EventType> {
  type: K;
  value: ChatEvents[K];
  at: number;
}

/** Records every event of a client; `next` takes the first matching one not taken yet. */
export class Recorder {
  readonly log: Recorded[] = [];
  private readonly taken = new Set<Recorded>();
  private waiters: (() => void)[] = [];

  constructor(readonly client: ChatClient) {
    for (const type of EVENT_TYPES) {
      client.on(type, (value) => {
        this.log.push({ type, value, at: performance.now() });
        const waiters = this.waiters;
        this.waiters = [];
        for (const wake of waiters) wake();
      });
    }
  }

  /** Every recorded value of one type, taken or not. */
  all<K extends EventType>(type: K): ChatEvents[K][] {
    return this.log.filter((e) => e.type === type).map((e) => e.value as ChatEvents[K]);
  }

  async next<K extends EventType>(
    type: K,
    match: (value: ChatEvents[K]) => boolean = () => true,
    timeoutMs = 5000,
  ): Promise<ChatEvents[K]> {
    const entry = await this.nextEntry(type, match, timeoutMs);
    return entry.value;
  }

  async nextEntry<K extends EventType>(
    type: K,
    match: (value: ChatEvents[K]) => boolean = () => true,
    timeoutMs = 5000,
  ): Promise<Recorded<K>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.log.find((e) => e.type === type && !this.taken.has(e) && match(e.value as ChatEvents[K]));
      if (found) {
        this.taken.add(found);
        return found as Recorded<K>;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        const seen = this.log
          .slice(-12)
          .map((e) => `${e.type} ${JSON.stringify(e.value)}`)
          .join("\n  ");
        throw new Error(`no ${type} event matching within ${timeoutMs} ms; last events:\n  ${seen}`);
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

  /** Waits until the client reaches `state`. */
  state(state: ChatEvents["state"]["state"], timeoutMs = 5000) {
    if (this.client.state === state) return Promise.resolve();
    return this.next("state", (s) => s.state === state, timeoutMs).then(() => undefined);
  }
}

interface Pipe {
  client: Socket<Conn>;
  upstream?: Socket<Conn>;
  /** Client bytes that arrived before the upstream connected. */
  early: Uint8Array[];
}
interface Conn {
  pipe: Pipe;
  /** Bytes for this socket that its send buffer did not take yet. */
  backlog: Uint8Array[];
}

/**
 * A TCP proxy on a free loopback port in front of `targetPort`. `cut()` drops every connection as
 * a network failure would (the client sees 1006); `stall()` keeps new server-to-client bytes from
 * arriving, as a link that died in one direction. It also notes when each connection was accepted.
 */
export class TcpProxy {
  readonly accepted: number[] = [];
  private readonly pipes = new Set<Pipe>();
  private stalled = false;
  private refusing = false;
  private listener: TCPSocketListener<Conn>;

  constructor(private readonly targetPort: number) {
    const proxy = this;
    this.listener = Bun.listen<Conn>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open(client) {
          proxy.accepted.push(performance.now());
          if (proxy.refusing) return void client.terminate();
          const pipe: Pipe = { client, early: [] };
          client.data = { pipe, backlog: [] };
          proxy.pipes.add(pipe);
          Bun.connect<Conn>({
            hostname: "127.0.0.1",
            port: proxy.targetPort,
            socket: {
              open(upstream) {
                upstream.data = { pipe, backlog: [] };
                pipe.upstream = upstream;
                for (const chunk of pipe.early.splice(0)) write(upstream, chunk);
              },
              data(_upstream, data) {
                if (!proxy.stalled) write(client, data);
              },
              drain: flush,
              close() {
                proxy.drop(pipe);
              },
              error() {
                proxy.drop(pipe);
              },
              connectError() {
                proxy.drop(pipe);
              },
            },
          }).catch(() => proxy.drop(pipe));
        },
        data(client, data) {
          if (!client.data) return;
          const upstream = client.data.pipe.upstream;
          if (upstream) write(upstream, data);
          else client.data.pipe.early.push(new Uint8Array(data));
        },
        drain: flush,
        close(client) {
          if (client.data) proxy.drop(client.data.pipe);
        },
        error(client) {
          if (client.data) proxy.drop(client.data.pipe);
        },
      },
    });
  }

  get port(): number {
    return this.listener.port;
  }

  get open(): number {
    return this.pipes.size;
  }

  /** Drops every open connection at once. */
  cut() {
    for (const pipe of [...this.pipes]) this.drop(pipe);
  }

  /** Stops (or resumes) forwarding from the server to clients. */
  stall(on = true) {
    this.stalled = on;
  }

  /** While on, every new connection is dropped at once, as if the server were unreachable. */
  refuse(on = true) {
    this.refusing = on;
  }

  stop() {
    this.cut();
    this.listener.stop(true);
  }

  private drop(pipe: Pipe) {
    if (!this.pipes.delete(pipe)) return;
    pipe.client.terminate();
    pipe.upstream?.terminate();
  }
}

function write(socket: Socket<Conn>, data: Uint8Array) {
  if (socket.data.backlog.length > 0) {
    socket.data.backlog.push(new Uint8Array(data));
    return;
  }
  const n = socket.write(data);
  if (n < data.byteLength) socket.data.backlog.push(data.slice(Math.max(n, 0)));
}

function flush(socket: Socket<Conn>) {
  const queue = socket.data.backlog;
  while (queue.length > 0) {
    const chunk = queue[0]!;
    const n = socket.write(chunk);
    if (n < chunk.byteLength) {
      queue[0] = chunk.slice(Math.max(n, 0));
      return;
    }
    queue.shift();
  }
}

/** A TCP listener that accepts connections and drops each at once, noting when each arrived. */
export function refusingListener() {
  const accepted: number[] = [];
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        accepted.push(performance.now());
        socket.terminate();
      },
      data() {},
    },
  });
  return { accepted, port: listener.port, stop: () => listener.stop(true) };
}
