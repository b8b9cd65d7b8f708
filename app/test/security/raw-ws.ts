// A WebSocket client written on a bare TCP socket, able to send what a browser never would:
// invalid UTF-8, reserved opcodes, unmasked or oversized frames, and to stop reading altogether.

import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";

export interface RawSocket {
  socket: Socket;
  /** Sends one frame; `mask` false breaks the rule that clients mask. */
  frame(opcode: number, payload: Uint8Array | string, options?: { mask?: boolean; fin?: boolean }): void;
  /** Resolves when the server ends the TCP connection. */
  ended: Promise<void>;
  received(): Buffer;
  destroy(): void;
}

export function rawConnect(port: number, path: string, headers: Record<string, string> = {}): Promise<RawSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let buffer = Buffer.alloc(0);
    let upgraded = false;
    let endResolve: () => void;
    const ended = new Promise<void>((r) => (endResolve = r));
    socket.on("close", () => endResolve());
    socket.on("error", (e) => (upgraded ? endResolve() : reject(e)));
    socket.on("connect", () => {
      const lines = [
        `GET ${path} HTTP/1.1`,
        `Host: 127.0.0.1:${port}`,
        "Upgrade: websocket",
        "Connection: Upgrade",
        `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}`,
        "Sec-WebSocket-Version: 13",
        ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
      ];
      socket.write(`${lines.join("\r\n")}\r\n\r\n`);
    });
    socket.on("data", (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (upgraded) return;
      const end = buffer.indexOf("\r\n\r\n");
      if (end < 0) return;
      const status = Number(buffer.subarray(0, end).toString("latin1").split(" ")[1]);
      if (status !== 101) {
        socket.destroy();
        reject(new Error(`upgrade refused with ${status}`));
        return;
      }
      upgraded = true;
      buffer = buffer.subarray(end + 4);
      resolve({
        socket,
        ended,
        received: () => buffer,
        destroy: () => socket.destroy(),
        frame(opcode, payload, options = {}) {
          const data = typeof payload === "string" ? Buffer.from(payload) : Buffer.from(payload);
          const mask = options.mask !== false;
          const head: number[] = [(options.fin === false ? 0 : 0x80) | opcode];
          const m = mask ? 0x80 : 0;
          if (data.length < 126) head.push(m | data.length);
          else if (data.length < 65536) head.push(m | 126, data.length >> 8, data.length & 255);
          else {
            head.push(m | 127, 0, 0, 0, 0);
            head.push(
              (data.length >>> 24) & 255,
              (data.length >>> 16) & 255,
              (data.length >>> 8) & 255,
              data.length & 255,
            );
          }
          if (!mask) {
            socket.write(Buffer.concat([Buffer.from(head), data]));
            return;
          }
          const key = randomBytes(4);
          const masked = Buffer.alloc(data.length);
          for (let i = 0; i < data.length; i++) masked[i] = data[i]! ^ key[i & 3]!;
          socket.write(Buffer.concat([Buffer.from(head), key, masked]));
        },
      });
    });
  });
}

/** A frame the server sent, as read back from a raw socket's bytes. */
export interface ServerFrame {
  opcode: number;
  payload: Buffer;
}

/** The complete frames in `bytes` (server frames are never masked); a cut-off last frame is left out. */
export function serverFrames(bytes: Buffer): ServerFrame[] {
  const frames: ServerFrame[] = [];
  let at = 0;
  while (at + 2 <= bytes.length) {
    const opcode = bytes[at]! & 0x0f;
    let length = bytes[at + 1]! & 0x7f;
    let head = 2;
    if (length === 126) {
      if (at + 4 > bytes.length) break;
      length = bytes.readUInt16BE(at + 2);
      head = 4;
    } else if (length === 127) {
      if (at + 10 > bytes.length) break;
      length = Number(bytes.readBigUInt64BE(at + 2));
      head = 10;
    }
    if (at + head + length > bytes.length) break;
    frames.push({ opcode, payload: bytes.subarray(at + head, at + head + length) });
    at += head + length;
  }
  return frames;
}
