// A minimal WebSocket client over Bun's TCP sockets, built for load generation: received frames are
// split out of each TCP chunk with a few byte reads and, once counting starts, only message frames
// are counted (no decoding, no per-frame event). That keeps the load generator far cheaper per
// frame than any of the servers it measures, so it is not what limits the figures. A batched
// WebSocket frame (the chat server's `batch=1`: JSON frames joined by `\n`) is split the same way,
// with one native search for each line feed.
//
// Two protocols: the chat server's (and raw Bun's, which mimics it), and Centrifugo's JSON protocol
// (v2: commands with an id, replies with that id, publications as `{"push":{"channel":..,"pub":..}}`,
// several of them per WebSocket frame joined by `\n`; an empty `{}` is its ping, answered by `{}`).

import type { Socket } from "bun";

const OP_TEXT = 0x1;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// `{"type":"message",` is how every server measured here starts a room message frame;
// `{"type":"message_response"` differs at byte 17.
const MESSAGE_PREFIX = encoder.encode('{"type":"message",');

export type WireProtocol = "chat" | "centrifugo";

/** `{"push":{"channel":` starts a Centrifugo publication (a room message here). */
const PUSH_PREFIX = encoder.encode('{"push":{"channel":');
const CENTRIFUGO_PONG = encoder.encode("{}");

/** The frames a load generator sends, by protocol. */
export const protocols = {
  chat: {
    join: (room: string) => JSON.stringify({ type: "join", room }),
    isJoined: (text: string) => text.includes('"for":"join"'),
    isError: (text: string) => text.startsWith('{"type":"error"'),
    message: (room: string, text: string, clientMsgId: string) =>
      JSON.stringify({ type: "message", room, text, clientMsgId }),
    /** The text of a room message frame, or undefined for any other frame. */
    messageText: (frame: string) =>
      frame.startsWith('{"type":"message",') ? (JSON.parse(frame).text as string) : undefined,
  },
  centrifugo: {
    // Insecure client mode: no token; one frame holds the connect and the subscribe commands.
    join: (room: string) => `{"id":1,"connect":{"name":"bench"}}\n{"id":2,"subscribe":{"channel":"${room}"}}`,
    isJoined: (text: string) => text.startsWith('{"id":2,"subscribe"'),
    isError: (text: string) => text.includes('"error":{'),
    message: (room: string, text: string, _clientMsgId: string) =>
      JSON.stringify({ id: 3, publish: { channel: room, data: { text } } }),
    messageText: (frame: string) =>
      frame.startsWith('{"push":{"channel":') && frame.includes('"pub":')
        ? (JSON.parse(frame).push.pub.data.text as string)
        : undefined,
  },
} satisfies Record<WireProtocol, unknown>;

export interface WireOptions {
  host: string;
  port: number;
  path: string;
  /** "chat" by default. */
  protocol?: WireProtocol;
  /** Called with each JSON frame (each line of a batched WebSocket frame) while `counting` is false. */
  onText?: (text: string) => void;
  onClose?: (reason: string) => void;
}

/** Encodes one masked client frame (clients must mask, RFC 6455 section 5.3). */
export function encodeClientFrame(payload: Uint8Array, opcode = OP_TEXT): Uint8Array {
  const length = payload.length;
  const header = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const frame = new Uint8Array(header + 4 + length);
  frame[0] = 0x80 | opcode;
  if (length < 126) {
    frame[1] = 0x80 | length;
  } else if (length < 65536) {
    frame[1] = 0x80 | 126;
    frame[2] = length >>> 8;
    frame[3] = length & 0xff;
  } else {
    frame[1] = 0x80 | 127;
    new DataView(frame.buffer).setBigUint64(2, BigInt(length));
  }
  const mask = (Math.random() * 0x1_0000_0000) >>> 0;
  const m = [mask >>> 24, (mask >>> 16) & 0xff, (mask >>> 8) & 0xff, mask & 0xff];
  frame.set(m, header);
  const start = header + 4;
  for (let i = 0; i < length; i++) frame[start + i] = payload[i]! ^ m[i & 3]!;
  return frame;
}

export class WireClient {
  /** Room message frames received since counting started. */
  messages = 0;
  /** Payload bytes of those frames. */
  messageBytes = 0;
  /** WebSocket frames that held at least one room message, since counting started. */
  messageFrames = 0;
  /** Every frame received, of any type. */
  frames = 0;
  /** `error` frames received since counting started, and the first of them. */
  errors = 0;
  firstError: string | undefined;
  counting = false;
  closed: string | undefined;

  private socket: Socket<undefined> | undefined;
  private handshakeDone = false;
  private head = "";
  private rest: Uint8Array | undefined;
  private pending: Uint8Array[] = [];
  private opened!: { resolve: () => void; reject: (e: Error) => void };
  /** Called after each received TCP chunk has been processed. */
  onChunk: (() => void) | undefined;

  constructor(private readonly options: WireOptions) {}

  connect(timeoutMs: number): Promise<void> {
    const { host, port, path } = this.options;
    const done = new Promise<void>((resolve, reject) => (this.opened = { resolve, reject }));
    const timer = setTimeout(() => this.fail(`no handshake answer within ${timeoutMs} ms`), timeoutMs);
    void done.then(
      () => clearTimeout(timer),
      () => clearTimeout(timer),
    );
    const client = this;
    Bun.connect({
      hostname: host,
      port,
      socket: {
        open(socket) {
          client.socket = socket;
          const key = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64");
          client.write(
            encoder.encode(
              `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
                `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
            ),
          );
        },
        data(_socket, chunk) {
          client.receive(chunk);
        },
        drain() {
          client.flush();
        },
        close() {
          client.fail("connection closed");
        },
        error(_socket, error) {
          client.fail(`socket error: ${error.message}`);
        },
        connectError(_socket, error) {
          client.fail(`connect failed: ${error.message}`);
        },
      },
    }).catch((error: Error) => this.fail(`connect failed: ${error.message}`));
    return done;
  }

  sendText(text: string) {
    this.write(encodeClientFrame(encoder.encode(text)));
  }

  /** Sends an already encoded frame. */
  sendFrame(frame: Uint8Array) {
    this.write(frame);
  }

  close() {
    this.socket?.end();
  }

  private fail(reason: string) {
    if (this.closed) return;
    this.closed = reason;
    if (!this.handshakeDone) this.opened.reject(new Error(reason));
    this.options.onClose?.(reason);
  }

  private write(data: Uint8Array) {
    const socket = this.socket;
    if (!socket) throw new Error("socket not open");
    if (this.pending.length > 0) {
      this.pending.push(data);
      return;
    }
    const written = socket.write(data);
    if (written < data.length) this.pending.push(data.subarray(Math.max(0, written)));
  }

  private flush() {
    const socket = this.socket;
    while (socket && this.pending.length > 0) {
      const data = this.pending[0]!;
      const written = socket.write(data);
      if (written < data.length) {
        this.pending[0] = data.subarray(Math.max(0, written));
        return;
      }
      this.pending.shift();
    }
  }

  private receive(chunk: Uint8Array) {
    if (!this.handshakeDone) {
      this.head += decoder.decode(chunk);
      const end = this.head.indexOf("\r\n\r\n");
      if (end < 0) return;
      const status = this.head.slice(0, this.head.indexOf("\r\n"));
      if (!/^HTTP\/1\.1 101 /.test(status)) {
        this.fail(`upgrade refused: ${status}`);
        this.socket?.end();
        return;
      }
      this.handshakeDone = true;
      const headerBytes = encoder.encode(this.head.slice(0, end + 4)).length;
      this.opened.resolve();
      chunk = chunk.subarray(headerBytes);
      if (chunk.length === 0) return;
    }
    let buf = chunk;
    if (this.rest) {
      const joined = new Uint8Array(this.rest.length + chunk.length);
      joined.set(this.rest);
      joined.set(chunk, this.rest.length);
      buf = joined;
      this.rest = undefined;
    }
    let at = 0;
    const end = buf.length;
    while (end - at >= 2) {
      const opcode = buf[at]! & 0x0f;
      let length = buf[at + 1]! & 0x7f;
      let header = 2;
      if (length === 126) {
        if (end - at < 4) break;
        length = (buf[at + 2]! << 8) | buf[at + 3]!;
        header = 4;
      } else if (length === 127) {
        if (end - at < 10) break;
        length = Number(new DataView(buf.buffer, buf.byteOffset + at + 2, 8).getBigUint64(0));
        header = 10;
      }
      if (end - at < header + length) break;
      const start = at + header;
      this.frames++;
      if (opcode === OP_TEXT) {
        if (this.counting) {
          const before = this.messages;
          const stop = start + length;
          let line = start;
          for (;;) {
            const feed = buf.indexOf(0x0a, line);
            const lineEnd = feed < 0 || feed >= stop ? stop : feed;
            this.countLine(buf, line, lineEnd - line);
            if (lineEnd === stop) break;
            line = lineEnd + 1;
          }
          if (this.messages > before) this.messageFrames++;
        } else {
          for (const text of decoder.decode(buf.subarray(start, start + length)).split("\n")) {
            if (text === "{}" && this.options.protocol === "centrifugo") this.write(encodeClientFrame(CENTRIFUGO_PONG));
            else this.options.onText?.(text);
          }
        }
      } else if (opcode === OP_PING) {
        this.write(encodeClientFrame(buf.slice(start, start + length), 0xa));
      } else if (opcode === OP_CLOSE) {
        const code = length >= 2 ? (buf[start]! << 8) | buf[start + 1]! : 1005;
        this.fail(`server closed the WebSocket with ${code}`);
      }
      at = start + length;
    }
    // Bun may reuse the chunk's memory after this callback returns: keep a copy of a partial frame.
    if (at < end) this.rest = buf.slice(at);
    this.onChunk?.();
  }

  /** Centrifugo's frames: a publication push, an error reply, or its ping (answered at once). */
  private countCentrifugoLine(buf: Uint8Array, start: number, length: number) {
    if (length === 2 && buf[start] === 0x7b && buf[start + 1] === 0x7d) {
      this.write(encodeClientFrame(CENTRIFUGO_PONG));
    } else if (length > PUSH_PREFIX.length && buf[start + 2] === 0x70 /* p */ && buf[start + 3] === 0x75 /* u */) {
      this.messages++;
      this.messageBytes += length;
    } else if (decoder.decode(buf.subarray(start, Math.min(start + length, start + 64))).includes('"error":{')) {
      this.errors++;
      this.firstError ??= decoder.decode(buf.subarray(start, start + length));
    }
  }

  /** Counts one JSON frame by its first bytes: a room message, or an error (which the run reports). */
  private countLine(buf: Uint8Array, start: number, length: number) {
    if (this.options.protocol === "centrifugo") {
      this.countCentrifugoLine(buf, start, length);
      return;
    }
    if (length > MESSAGE_PREFIX.length && buf[start + 9] === 0x6d && buf[start + 17] === 0x2c) {
      this.messages++;
      this.messageBytes += length;
    } else if (length > 15 && buf[start + 9] === 0x65 && buf[start + 10] === 0x72 && buf[start + 14] === 0x22) {
      // `{"type":"error"`
      this.errors++;
      this.firstError ??= decoder.decode(buf.subarray(start, start + length));
    }
  }
}

/**
 * Connects every client, sends each a `join` of `room` and waits until every join is answered
 * (`joined` resolves when a client's answer arrives); `die` when that takes longer than `timeoutMs`.
 */
export async function connectAndJoin(
  clients: WireClient[],
  joined: Promise<void>[],
  room: string,
  timeoutMs: number,
  die: (message: string) => never,
  protocol: WireProtocol = "chat",
) {
  const deadline = setTimeout(() => die(`clients did not connect and join within ${timeoutMs} ms`), timeoutMs);
  await Promise.all(clients.map((c) => c.connect(timeoutMs))).catch((e: Error) => die(e.message));
  for (const client of clients) client.sendText(protocols[protocol].join(room));
  await Promise.all(joined);
  clearTimeout(deadline);
}

/** Runs `task` over `items` with at most `limit` running at once. */
export async function pool<T>(items: T[], limit: number, task: (item: T) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await task(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
