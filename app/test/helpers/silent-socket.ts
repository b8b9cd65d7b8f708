// A minimal WebSocket client on a raw TCP socket that never answers pings, like a frozen peer.
// Bun's WebSocket (and its stand-in for the `ws` package) always answers pings, so a test of the
// heartbeat timeout needs its own framing. It offers the slice of the WebSocket API TestClient uses.
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";

type Listener = (event: any) => void;

export class SilentSocket {
  onmessage: ((event: { data: string }) => void) | null = null;
  readyState = 0;
  /** WebSocket pings received (and left unanswered). */
  pings = 0;
  onping: (() => void) | null = null;
  private readonly listeners = new Map<string, Listener[]>();
  private readonly socket: Socket;
  private buffer = Buffer.alloc(0);
  private handshakeDone = false;
  private closeCode = 1006;
  private closeReason = "";

  constructor(url: string) {
    const { hostname, port, pathname, search } = new URL(url);
    this.socket = connect(Number(port), hostname);
    const key = randomBytes(16).toString("base64");
    this.socket.on("connect", () => {
      this.socket.write(
        `GET ${pathname}${search} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    this.socket.on("data", (chunk: Buffer) => this.receive(chunk));
    this.socket.on("error", () => this.emit("error", {}));
    this.socket.on("close", () => {
      this.readyState = 3;
      this.emit("close", { code: this.closeCode, reason: this.closeReason });
    });
  }

  addEventListener(type: string, listener: Listener, _options?: unknown) {
    const list = this.listeners.get(type) ?? [];
    list.push(listener);
    this.listeners.set(type, list);
  }

  private emit(type: string, event: unknown) {
    for (const listener of this.listeners.get(type) ?? []) listener(event);
  }

  send(data: string) {
    this.writeFrame(0x1, Buffer.from(data));
  }

  close(code = 1000) {
    if (this.readyState !== 1) return;
    const payload = Buffer.alloc(2);
    payload.writeUInt16BE(code);
    this.writeFrame(0x8, payload);
    this.readyState = 2;
  }

  private writeFrame(opcode: number, payload: Buffer) {
    const mask = randomBytes(4);
    const length = payload.length;
    const header = length < 126 ? Buffer.alloc(2) : length < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    if (length < 126) header[1] = 0x80 | length;
    else if (length < 65536) {
      header[1] = 0x80 | 126;
      header.writeUInt16BE(length, 2);
    } else {
      header[1] = 0x80 | 127;
      header.writeBigUInt64BE(BigInt(length), 2);
    }
    const masked = Buffer.alloc(length);
    for (let i = 0; i < length; i++) masked[i] = payload[i]! ^ mask[i % 4]!;
    this.socket.write(Buffer.concat([header, mask, masked]));
  }

  private receive(chunk: Buffer) {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    if (!this.handshakeDone) {
      const end = this.buffer.indexOf("\r\n\r\n");
      if (end < 0) return;
      const status = this.buffer.subarray(0, end).toString("latin1").split(" ")[1];
      this.buffer = this.buffer.subarray(end + 4);
      if (status !== "101") {
        this.emit("error", {});
        this.socket.destroy();
        return;
      }
      this.handshakeDone = true;
      this.readyState = 1;
      this.emit("open", {});
    }
    for (;;) {
      if (this.buffer.length < 2) return;
      const opcode = this.buffer[0]! & 0x0f;
      let length = this.buffer[1]! & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (this.buffer.length < 4) return;
        length = this.buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (this.buffer.length < 10) return;
        length = Number(this.buffer.readBigUInt64BE(2));
        offset = 10;
      }
      if (this.buffer.length < offset + length) return;
      const payload = this.buffer.subarray(offset, offset + length);
      this.buffer = this.buffer.subarray(offset + length);
      if (opcode === 0x1) this.onmessage?.({ data: payload.toString("utf8") });
      else if (opcode === 0x9) {
        this.pings++;
        this.onping?.();
      } else if (opcode === 0x8) {
        this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        this.closeReason = payload.subarray(2).toString("utf8");
        if (this.readyState === 1) this.writeFrame(0x8, payload.subarray(0, 2));
        this.readyState = 2;
        this.socket.end();
      }
    }
  }
}
