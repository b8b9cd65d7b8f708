// Baseline: the least a Bun chat server can do. Each frame is parsed to find its room; a `join`
// subscribes the socket to the room and is acknowledged; a `message` is published unchanged to the
// room with Bun's native `server.publish`, which reaches every member including the sender.
// Usage: PORT=<port> bun bench/baselines/raw-bun.ts

interface Frame {
  type?: string;
  room?: string;
}

const JOINED = '{"type":"message_response","ok":true,"for":"join"}';

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(process.env.PORT ?? 0),
  fetch(request, server) {
    const url = new URL(request.url);
    if (url.pathname === "/health") return new Response("ok");
    if (server.upgrade(request, { data: undefined })) return;
    return new Response("expected a WebSocket upgrade", { status: 400 });
  },
  websocket: {
    idleTimeout: 0,
    sendPings: false,
    perMessageDeflate: false,
    message(ws, message) {
      let frame: Frame;
      try {
        frame = JSON.parse(String(message));
      } catch {
        return;
      }
      if (typeof frame.room !== "string") return;
      if (frame.type === "message") server.publish(frame.room, message);
      else if (frame.type === "join") {
        ws.subscribe(frame.room);
        ws.send(JOINED);
      }
    },
  },
});

process.stdout.write(`raw-bun listening on ${server.port}\n`);
