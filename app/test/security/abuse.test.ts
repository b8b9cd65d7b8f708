// Abuse run against the compiled binary: more than 10,000 malformed frames and upgrade requests
// while a well-behaved pair keeps chatting on the same instance. The server must never crash, its
// resident memory must stay bounded, and the pair must receive every message; their latency during
// the abuse is written to test-output/abuse.json (and recorded in docs/performance.md).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { type RunningBinary, startBinary } from "../helpers/binary";
import { TestClient } from "../helpers/client";
import { upgrade } from "../helpers/http";
import { connId } from "../helpers/server";
import { rawConnect } from "./raw-ws";

const OUT = join(import.meta.dir, "..", "..", "test-output");
let bin: RunningBinary;

function rssMb(pid: number) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

beforeAll(async () => {
  // Limits that would stop the flood early are raised, so every malformed frame reaches the parser.
  bin = await startBinary({
    LOG_LEVEL: "error",
    FRAME_RATE: "100000",
    FRAME_BURST: "100000",
    CONNECT_RATE_PER_IP: "100000",
    CONNECT_BURST_PER_IP: "100000",
    MAX_CONNECTIONS_PER_USER: "100000",
  });
});
let calmPair: Subprocess | undefined;
afterAll(async () => {
  calmPair?.kill("SIGKILL");
  await bin.stop("SIGKILL");
});

/** Malformed or hostile text frames; each connection sends ten, then an eleventh that closes it (1003). */
function badFrame(i: number): string | Uint8Array {
  switch (i % 16) {
    case 0:
      return "{not json";
    case 1:
      return "[".repeat(5000) + "]".repeat(5000);
    case 2:
      return JSON.stringify({ type: "join", room: "a", __proto__: { polluted: true } }).replace(
        '"type"',
        '"__proto__":{"isAdmin":true},"type"',
      );
    case 3:
      return JSON.stringify({ type: "constructor" });
    case 4:
      return JSON.stringify({ type: "__proto__" });
    case 5:
      return JSON.stringify({ type: "message", room: "calm", text: 12, clientMsgId: "x" });
    case 6:
      return JSON.stringify({ type: "join", room: "x".repeat(65) });
    case 7:
      return JSON.stringify({ type: "history", room: "calm", limit: 1e308 });
    case 8:
      return JSON.stringify({ type: "join", room: { toString: "calm" } });
    case 9:
      return new Uint8Array([0, 255, 1, 254, i & 255]);
    case 10:
      return JSON.stringify({ type: "message", room: "calm", text: "t".repeat(5000), clientMsgId: "long" });
    case 11:
      return JSON.stringify({ type: "ping", ref: "r".repeat(1000) });
    case 12:
      return JSON.stringify([{ type: "ping" }]);
    case 13:
      return "null";
    case 14:
      return JSON.stringify({ type: "read", room: "calm", offset: -1 });
    default:
      return `{"type":"join","room":"\u0000\ud800"}`;
  }
}

/** Reads a child's output line by line; each line is awaited with a deadline. */
function lines(stream: ReadableStream<Uint8Array>) {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  return {
    async next(timeoutMs: number): Promise<string> {
      const deadline = Date.now() + timeoutMs;
      while (!buffer.includes("\n")) {
        const left = deadline - Date.now();
        const chunk = await Promise.race([reader.read(), Bun.sleep(Math.max(0, left)).then(() => undefined)]);
        if (!chunk) throw new Error(`no line from the calm pair within ${timeoutMs} ms`);
        if (chunk.done) throw new Error("the calm pair exited without its line");
        buffer += decoder.decode(chunk.value, { stream: true });
      }
      const i = buffer.indexOf("\n");
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 1);
      return line;
    },
  };
}

async function pool<T>(items: T[], width: number, work: (item: T) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

test("10,000+ malformed frames and upgrades: no crash, bounded memory, the calm pair keeps chatting", async () => {
  const pid = bin.proc.pid;
  const ws = `ws://127.0.0.1:${bin.port}`;
  // The calm pair runs in a process of its own so that this one, busy with the abuse, cannot
  // slow down its measurements.
  mkdirSync(OUT, { recursive: true });
  const stopFile = join(OUT, `abuse-calm-stop-${process.pid}`);
  rmSync(stopFile, { force: true });
  const calm = Bun.spawn([process.execPath, join(import.meta.dir, "calm-pair.ts"), ws, stopFile], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "inherit",
  });
  // Whatever happens below, the pair never outlives the test (it would hold the test output open).
  calmPair = calm;
  const calmLines = lines(calm.stdout);
  expect(JSON.parse(await calmLines.next(10_000))).toEqual({ ready: true });
  const baseline = rssMb(pid);
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMb(pid))), 100);

  let frames = 0;
  let upgrades = 0;
  const closes: Record<number, number> = {};

  // 1. Malformed frames through real WebSocket clients: 700 connections x 11 frames.
  await pool(
    Array.from({ length: 700 }, (_, i) => i),
    25,
    async (n) => {
      const c = await TestClient.connect(`${ws}/ws/chat/${connId("fz")}?user=fuzz${n % 50}`);
      for (let k = 0; k < 11; k++) {
        c.send(badFrame(n * 11 + k) as string);
        frames++;
      }
      // A connection the server never closes would show here as -1 instead of hanging the run.
      const { code } = await Promise.race([c.closed, Bun.sleep(10_000).then(() => ({ code: -1 }))]);
      if (code === -1) c.ws.close();
      closes[code] = (closes[code] ?? 0) + 1;
    },
  );

  // 2. Frames no browser would send, on a bare socket: invalid UTF-8, reserved opcodes, unmasked,
  //    oversized, a stray continuation, a control frame too long, and join floods.
  const rawKinds = 8;
  await pool(
    Array.from({ length: 400 }, (_, i) => i),
    20,
    async (n) => {
      const raw = await Promise.race([
        rawConnect(bin.port, `/ws/chat/${connId("raw")}`),
        Bun.sleep(10_000).then(() => Promise.reject(new Error("no answer to a bare-socket upgrade within 10 s"))),
      ]);
      switch (n % rawKinds) {
        case 0:
          raw.frame(1, new Uint8Array([0x7b, 0xc3, 0x28, 0xff, 0xfe, 0x7d]));
          break;
        case 1:
          raw.frame(3 + (n % 5), "reserved");
          break;
        case 2:
          raw.frame(1, '{"type":"ping"}', { mask: false });
          break;
        case 3:
          raw.frame(1, "x".repeat(20_000));
          break;
        case 4:
          raw.frame(0, "continuation without a start");
          break;
        case 5:
          raw.frame(9, "p".repeat(200));
          break;
        case 6:
          raw.frame(1, '{"type":"pi', { fin: false });
          raw.frame(1, 'ng"}');
          break;
        default:
          for (let r = 0; r < 60; r++) raw.frame(1, JSON.stringify({ type: "join", room: `flood-${r}` }));
          frames += 59;
      }
      frames++;
      await Promise.race([raw.ended, Bun.sleep(2000)]);
      raw.destroy();
    },
  );

  // 3. Upgrade requests with bad paths, huge headers and garbage.
  const badPaths = [
    "/ws/chat/short",
    `/ws/chat/${"a".repeat(65)}`,
    "/ws/chat/%00%00%00%00%00%00%00%00",
    "/ws/chat/../../../../etc/passwd",
    "/ws/chat/valid-id-123/extra",
    `/ws/chat/${encodeURIComponent("ünïcødé-ïd")}`,
    `/ws/chat/abcdefgh?user=${"u".repeat(100)}`,
    `/ws/chat/${"%".repeat(20)}`,
  ];
  await pool(
    Array.from({ length: 2400 }, (_, i) => i),
    40,
    async (n) => {
      upgrades++;
      if (n % 4 === 3) {
        // Garbage or oversized request heads on a bare socket; the server must just answer or close.
        await new Promise<void>((resolve) => {
          const s = connect(bin.port, "127.0.0.1");
          const done = () => {
            s.destroy();
            resolve();
          };
          s.on("error", done);
          s.on("close", done);
          s.on("data", done);
          s.setTimeout(2000, done);
          s.on("connect", () =>
            s.write(
              n % 8 === 3
                ? `GET /ws/chat/abcdefgh HTTP/1.1\r\nX-Big: ${"b".repeat(70_000)}\r\n\r\n`
                : `\x16\x03\x01garbage\r\n\r\n`,
            ),
          );
        });
        return;
      }
      const answer = await upgrade(
        `http://127.0.0.1:${bin.port}${badPaths[n % badPaths.length]}`,
        n % 5 === 0 ? { "Sec-WebSocket-Version": "8" } : {},
      ).catch(() => undefined);
      if (answer) expect(answer.status).not.toBe(500);
    },
  );

  writeFileSync(stopFile, "stop\n");
  const result = await calmLines.next(10_000);
  rmSync(stopFile, { force: true });
  clearInterval(sampler);
  const pair = JSON.parse(result) as {
    sent: number;
    received: number;
    duplicates: number;
    p50: number;
    p99: number;
    max: number;
  };

  const health = await fetch(`http://127.0.0.1:${bin.port}/health`);
  expect(health.status).toBe(200);
  expect(bin.proc.exitCode).toBeNull();
  const report = {
    malformedFrames: frames,
    upgradeRequests: upgrades,
    closeCodes: closes,
    calmMessagesSent: pair.sent,
    calmMessagesReceived: pair.received,
    duplicates: pair.duplicates,
    latencyMs: { p50: pair.p50, p99: pair.p99, max: pair.max },
    rssMb: { baseline: +baseline.toFixed(1), peak: +peak.toFixed(1), after: +rssMb(pid).toFixed(1) },
  };
  writeFileSync(join(OUT, "abuse.json"), JSON.stringify(report, null, 2));
  console.log("abuse run:", JSON.stringify(report));

  expect(frames + upgrades).toBeGreaterThanOrEqual(10_000);
  expect(pair.sent).toBeGreaterThan(100);
  expect(pair.received).toBe(pair.sent);
  expect(pair.duplicates).toBe(0);
  // Every fuzzing connection was answered and then closed for its invalid frames, none left open.
  expect(closes).toEqual({ 1003: 700 });
  // Bounded: the abuse may not grow the process by more than a small multiple of its idle size.
  expect(peak - baseline).toBeLessThan(256);
}, 240_000);
