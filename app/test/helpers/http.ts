// A WebSocket upgrade request written by hand on a TCP socket, so a test sees the HTTP answer the
// server gives before (or instead of) the handshake: status, headers and body.
import { connect } from "node:net";

export interface UpgradeAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export function rawUpgrade(
  port: number,
  path: string,
  timeoutMs = 3000,
  extraHeaders: Record<string, string> = {},
): Promise<UpgradeAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let data = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer to the upgrade of ${path}; got:\n${data}`));
    }, timeoutMs);
    const finish = (answer: UpgradeAnswer) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    socket.on("connect", () => {
      socket.write(
        [
          `GET ${path} HTTP/1.1`,
          `Host: 127.0.0.1:${port}`,
          "Upgrade: websocket",
          "Connection: Upgrade",
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
          "Sec-WebSocket-Version: 13",
          ...Object.entries(extraHeaders).map(([k, v]) => `${k}: ${v}`),
          "",
          "",
        ].join("\r\n"),
      );
    });
    socket.on("data", (chunk) => {
      data += chunk.toString("latin1");
      const end = data.indexOf("\r\n\r\n");
      if (end < 0) return;
      const [statusLine, ...lines] = data.slice(0, end).split("\r\n");
      const status = Number(statusLine!.split(" ")[1]);
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const i = line.indexOf(":");
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      const body = data.slice(end + 4);
      if (status === 101) return finish({ status, headers, body: "" });
      const length = Number(headers["content-length"] ?? 0);
      if (Buffer.byteLength(body, "latin1") >= length) finish({ status, headers, body });
    });
    socket.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** An upgrade of a ws:// or http:// URL with chosen headers; a refusal's JSON body comes parsed. */
export async function upgrade(url: string, headers: Record<string, string> = {}) {
  const { port, pathname, search } = new URL(url);
  const answer = await rawUpgrade(Number(port), `${pathname}${search}`, 3000, headers);
  return { status: answer.status, headers: answer.headers, body: answer.body ? JSON.parse(answer.body) : undefined };
}
