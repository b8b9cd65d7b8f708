// Baseline: Node.js with the `ws` package, broadcasting by looping over the room's sockets. Same
// behaviour as raw-bun.ts: `join` subscribes and is acknowledged, `message` is sent unchanged to
// every member including the sender.
// Usage: PORT=<port> node bench/baselines/node-ws.mjs

import { createServer } from "node:http";
import { WebSocketServer } from "ws";

const JOINED = '{"type":"message_response","ok":true,"for":"join"}';

/** Room name -> member sockets. */
const rooms = new Map();

const http = createServer((request, response) => {
  if (request.url === "/health") {
    response.end("ok");
    return;
  }
  response.statusCode = 400;
  response.end("expected a WebSocket upgrade");
});

const wss = new WebSocketServer({ server: http, perMessageDeflate: false, clientTracking: false });

wss.on("connection", (socket) => {
  const joined = new Set();
  socket.on("message", (data, isBinary) => {
    if (isBinary) return;
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (typeof frame?.room !== "string") return;
    if (frame.type === "message") {
      const members = rooms.get(frame.room);
      if (members) for (const member of members) member.send(data, { binary: false });
    } else if (frame.type === "join") {
      let members = rooms.get(frame.room);
      if (!members) rooms.set(frame.room, (members = new Set()));
      members.add(socket);
      joined.add(frame.room);
      socket.send(JOINED);
    }
  });
  socket.on("close", () => {
    for (const room of joined) rooms.get(room)?.delete(socket);
  });
});

http.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  process.stdout.write(`node-ws listening on ${http.address().port}\n`);
});
