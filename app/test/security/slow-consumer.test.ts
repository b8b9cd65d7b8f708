import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { startBinary } from "../helpers/binary";
import { TestClient } from "../helpers/client";
import { connId } from "../helpers/server";
import { rawConnect, serverFrames } from "./raw-ws";

const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;

// Both kinds of client: a batched socket's joined frames are buffered and counted the same way. A
// commit's messages are released half the limit per event-loop turn: the default limit too.
test.each([
  ["plain frames", "", "65536"],
  ["batched frames", "&batch=1", "65536"],
  ["batched frames, the default limit", "&batch=1", ""],
])(
  "a client that stops reading is closed (4008, or cut at the limit) and misses no frame before it; it cannot grow the server; others keep full speed (%s)",
  async (_kind, batch, limit) => {
    const bin = await startBinary({
      LOG_LEVEL: "error",
      ...(limit ? { BACKPRESSURE_LIMIT_BYTES: limit } : {}),
      FRAME_RATE: "100000",
      FRAME_BURST: "100000",
      HEARTBEAT_INTERVAL: "1000",
      PONG_TIMEOUT: "30000",
    });
    // Killed whatever happens below: an assertion that fails must not leave the server running.
    const cleanup = () => {
      if (bin.proc.exitCode === null) bin.proc.kill("SIGKILL");
    };
    try {
      const ws = `ws://127.0.0.1:${bin.port}`;
      const slow = await rawConnect(bin.port, `/ws/chat/${connId("slow")}?user=sloth${batch}`);
      slow.frame(1, JSON.stringify({ type: "join", room: "firehose" }));
      const reader = await TestClient.connect(`${ws}/ws/chat/${connId()}?user=reader${batch}`);
      const writer = await TestClient.connect(`${ws}/ws/chat/${connId()}?user=writer${batch}`);
      await reader.request({ type: "join", room: "firehose" });
      await writer.request({ type: "join", room: "firehose" });
      // Let the join land, then stop reading: the kernel buffers fill, then the server's.
      await Bun.sleep(100);
      slow.socket.pause();
      const baseline = rssMb(bin.proc.pid);
      let peak = baseline;

      const count = 3000;
      const text = "x".repeat(3000);
      let got = 0;
      reader.ws.addEventListener("message", (e) => {
        for (const line of String(e.data).split("\n")) if (line.startsWith('{"type":"message",')) got++;
      });
      const started = performance.now();
      for (let i = 0; i < count; i++) {
        writer.send({ type: "message", room: "firehose", text, clientMsgId: `f${i}` });
        if (i % 200 === 0) {
          peak = Math.max(peak, rssMb(bin.proc.pid));
          await Bun.sleep(1);
        }
      }
      const deadline = Date.now() + 15_000;
      while (got < count && Date.now() < deadline) await Bun.sleep(20);
      const seconds = (performance.now() - started) / 1000;
      expect(got).toBe(count);

      // The paused peer cannot see the close itself; the server's count of its connections tells.
      const gone = Date.now() + 5000;
      let health = { connections: -1 };
      while (Date.now() < gone) {
        health = await (await fetch(`http://127.0.0.1:${bin.port}/health`)).json();
        if (health.connections === 2) break;
        await Bun.sleep(50);
      }
      expect(health.connections).toBe(2);
      // Closed with 4008 when the heartbeat saw the full buffer, or cut (1006) when the buffer passed
      // the limit between two of its checks: once, either way, and counted.
      const metrics = await (await fetch(`http://127.0.0.1:${bin.port}/metrics`)).text();
      const counter = (pattern: RegExp) => Number(pattern.exec(metrics)?.[1] ?? 0);
      const closed4008 = counter(/^websocket_disconnects_total\{code="4008"\} (\d+)$/m);
      const cut1006 = counter(/^websocket_disconnects_total\{code="1006"\} (\d+)$/m);
      expect(closed4008 + cut1006).toBe(1);
      expect(counter(/^websocket_slow_consumers_total (\d+)$/m)).toBe(closed4008);
      // What a client that reads again finds: every room message up to where the server stopped,
      // none missing in between (a frame dropped while the connection stayed open would leave a
      // gap no client could notice), then the close frame or the end of the connection.
      slow.socket.resume();
      await slow.ended;
      const offsets: number[] = [];
      for (const frame of serverFrames(slow.received())) {
        if (frame.opcode !== 1) continue;
        for (const line of frame.payload.toString("utf8").split("\n")) {
          if (line.startsWith('{"type":"message",')) offsets.push((JSON.parse(line) as { offset: number }).offset);
        }
      }
      expect(offsets.length).toBeGreaterThan(0);
      expect(offsets).toEqual(offsets.map((_, i) => offsets[0]! + i));
      expect(peak - baseline).toBeLessThan(64);
      console.log(
        `slow consumer: reader got ${count} x 3 KB in ${seconds.toFixed(2)} s; server RSS ${baseline.toFixed(1)} -> peak ${peak.toFixed(1)} MB; the stopped reader was ${closed4008 ? "closed with 4008" : "cut at the limit"} after ${offsets.length} messages`,
      );
      await Promise.all([reader.close(), writer.close()]);
      expect(await bin.stop()).toBe(0);
    } finally {
      cleanup();
    }
  },
  60_000,
);
