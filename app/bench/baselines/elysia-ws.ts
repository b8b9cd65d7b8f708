// Diagnostic baseline: the raw-bun.ts behaviour written on Elysia, to tell the framework's share of
// the chat server's cost from the chat's own. Two ways to run a WebSocket on Elysia:
//   ELYSIA_WS=route    Elysia's `.ws()` route: per-socket data is a copy of the request context, each
//                      frame is JSON-parsed by Elysia and handed over in a new ElysiaWS wrapper
//   ELYSIA_WS=upgrade  an Elysia GET route calling `server.upgrade()` itself with small per-socket
//                      data; Elysia's shared websocket handler then calls it with Bun's own socket
// Usage: PORT=<port> ELYSIA_WS=route|upgrade bun bench/baselines/elysia-ws.ts

import type { ServerWebSocket } from "bun";
import { Elysia } from "elysia";

interface Frame {
  type?: string;
  room?: string;
}

const JOINED = '{"type":"message_response","ok":true,"for":"join"}';
const mode = process.env.ELYSIA_WS ?? "route";
if (mode !== "route" && mode !== "upgrade") throw new Error(`ELYSIA_WS must be route or upgrade, got ${mode}`);

const websocket = { idleTimeout: 0, sendPings: false, perMessageDeflate: false };
const app = new Elysia({ websocket }).get("/health", () => "ok");

if (mode === "route") {
  app.ws("/ws/:id", {
    message(ws, frame) {
      // Elysia has already parsed the JSON text.
      const { type, room } = frame as Frame;
      if (typeof room !== "string") return;
      if (type === "message") app.server!.publish(room, JSON.stringify(frame));
      else if (type === "join") {
        ws.subscribe(room);
        ws.send(JOINED);
      }
    },
  });
} else {
  // Elysia's Bun adapter installs one websocket handler that calls `ws.data.message(ws, message)`
  // with Bun's socket: data carrying that function is all it needs.
  const data = {
    message(ws: ServerWebSocket<unknown>, message: string | Buffer) {
      let frame: Frame;
      try {
        frame = JSON.parse(String(message));
      } catch {
        return;
      }
      if (typeof frame.room !== "string") return;
      if (frame.type === "message") app.server!.publish(frame.room, message);
      else if (frame.type === "join") {
        ws.subscribe(frame.room);
        ws.send(JOINED);
      }
    },
  };
  app.get("/ws/:id", ({ request, server, set }) => {
    if (server?.upgrade(request, { data })) return;
    set.status = 400;
    return "expected a WebSocket upgrade";
  });
  // The shared handler exists only once some `.ws()` route is declared.
  app.ws("/unused-ws-route", { message() {} });
}

app.listen({ hostname: "127.0.0.1", port: Number(process.env.PORT ?? 0) });
process.stdout.write(`elysia-ws (${mode}) listening on ${app.server!.port}\n`);
