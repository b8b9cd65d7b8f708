// The connections-at-scale scenario, small: a few VUs each hold several sockets at once, chatting, and
// every threshold passes against the compiled server. The server's own count of open connections
// shows the sockets were held together, not one after the other.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type RunningBinary, startBinary } from "../helpers/binary";
import { runK6 } from "./k6";

let server: RunningBinary;
beforeAll(async () => {
  server = await startBinary({ LOG_LEVEL: "warn", CONNECT_RATE_PER_IP: "1000", CONNECT_BURST_PER_IP: "1000" });
});
afterAll(async () => {
  await server?.stop();
});

test("4 VUs x 6 sockets: 24 connections open at once, messages delivered, thresholds met", async () => {
  let peak = 0;
  let polling = true;
  const poll = (async () => {
    while (polling) {
      const health = (await (await fetch(`http://127.0.0.1:${server.port}/health`)).json()) as { connections: number };
      peak = Math.max(peak, health.connections);
      await Bun.sleep(100);
    }
  })();
  const run = await runK6("connections.js", {
    WS_URL: `ws://127.0.0.1:${server.port}`,
    VUS: "4",
    SOCKETS: "6",
    CONNECT_RATE: "50",
    DURATION: "4s",
    ROOM_SIZE: "3",
    MSG_RATE: "2",
  });
  polling = false;
  await poll;
  expect(run.exitCode, run.output).toBe(0);
  expect(peak).toBe(24);
  expect(run.metrics.session_success?.value).toBe(1);
  expect(run.metrics.chat_messages_received?.count ?? 0).toBeGreaterThan(0);
  // Every socket joined: 24 sessions, each counted once.
  expect((run.metrics.session_success?.passes ?? 0) + (run.metrics.session_success?.fails ?? 0)).toBe(24);
}, 60_000);
