// Upgrade attempts written by hand on a TCP socket with chosen headers, so a test reads the HTTP
// refusal (status, headers, JSON body) the server gives before any handshake.
import { connect } from "node:net";

export interface Refusal {
  status: number;
  headers: Record<string, string>;
  body: any;
}

export function upgrade(url: string, extra: Record<string, string> = {}, timeoutMs = 3000): Promise<Refusal> {
  const { port, pathname, search } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), "127.0.0.1");
    let data = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer to the upgrade of ${pathname}; got:\n${data}`));
    }, timeoutMs);
    const done = (r: Refusal) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    socket.on("connect", () => {
      const headers = {
        Host: `127.0.0.1:${port}`,
        Upgrade: "websocket",
        Connection: "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        ...extra,
      };
      socket.write(`GET ${pathname}${search} HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join("\r\n")}\r\n\r\n`);
    });
    socket.on("data", (chunk) => {
      data += chunk.toString("latin1");
      const end = data.indexOf("\r\n\r\n");
      if (end < 0) return;
      const [statusLine, ...lines] = data.slice(0, end).split("\r\n");
      const status = Number(statusLine!.split(" ")[1]);
      const headers: Record<string, string> = {};
      for (const line of lines) headers[line.slice(0, line.indexOf(":")).trim().toLowerCase()] = line.slice(line.indexOf(":") + 1).trim();
      if (status === 101) return done({ status, headers, body: undefined });
      const body = data.slice(end + 4);
      if (Buffer.byteLength(body, "latin1") >= Number(headers["content-length"] ?? 0)) done({ status, headers, body: body ? JSON.parse(body) : undefined });
    });
    socket.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
