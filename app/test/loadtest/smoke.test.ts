// The deploy gate's smoke scenario, run by the real k6 against the compiled server: it passes on a
// healthy server and fails (non-zero exit) when the server is gone, refuses upgrades or drops messages.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { freePort, type RunningBinary, startBinary } from "../helpers/binary";
import { runK6 } from "./k6";

const SMALL = { VUS: "4", DURATION: "5s", ROOM_SIZE: "2", MSG_RATE: "2" };

describe("smoke.js against the compiled server", () => {
  let server: RunningBinary;

  beforeAll(async () => {
    server = await startBinary({ LOG_LEVEL: "warn" });
  });

  afterAll(async () => {
    await server?.stop();
  });

  test("exits 0 with every threshold met, latency measured on each receiver", async () => {
    const run = await runK6("smoke.js", { ...SMALL, BASE_URL: server.httpUrl });

    expect(run.exitCode, run.output).toBe(0);
    const m = run.metrics;
    expect(m.msg_latency?.["p(95)"]).toBeGreaterThanOrEqual(0);
    // Two members per room: each message reaches both, so receipts are at least twice the sends.
    expect(m.chat_messages_received?.count).toBeGreaterThanOrEqual(2 * (m.chat_messages_sent?.count ?? 1));
    expect(m.session_success?.passes).toBeGreaterThanOrEqual(4);
    expect(m.session_success?.value).toBe(1);
    expect(m.errors?.value).toBe(0);
    expect(m.ws_connecting?.["p(95)"]).toBeGreaterThan(0);
    expect(m.error_frames).toBeUndefined();
    expect(m.unexpected_closes).toBeUndefined();
  }, 60_000);
});

describe("smoke.js as a gate that can fail", () => {
  test("nothing listening: thresholds fail, exit code non-zero", async () => {
    const run = await runK6("smoke.js", { VUS: "2", DURATION: "3s", WS_URL: `ws://127.0.0.1:${freePort()}` });

    expect(run.exitCode).not.toBe(0);
    expect(run.metrics.session_success?.value).toBe(0);
  }, 60_000);

  test("a server that refuses upgrades: non-zero exit", async () => {
    const refusing = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("no", { status: 503 }) });
    try {
      const run = await runK6("smoke.js", { VUS: "2", DURATION: "3s", BASE_URL: `http://127.0.0.1:${refusing.port}` });

      expect(run.exitCode).not.toBe(0);
      expect(run.metrics.errors?.value).toBe(1);
    } finally {
      refusing.stop(true);
    }
  }, 60_000);

  // Test double of the chat server: acknowledges joins and messages but never fans a message out.
  test("a server that acknowledges but never delivers: non-zero exit; TOKEN reaches the URL", async () => {
    const urls: string[] = [];
    const silent = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch(request, srv) {
        urls.push(request.url);
        return srv.upgrade(request) ? undefined : new Response("upgrade required", { status: 426 });
      },
      websocket: {
        open(ws) {
          ws.send(JSON.stringify({ type: "connection_established" }));
        },
        message(ws, raw) {
          const frame = JSON.parse(String(raw));
          ws.send(JSON.stringify({ type: "message_response", ok: true, ref: frame.ref, for: frame.type }));
        },
      },
    });
    try {
      const run = await runK6("smoke.js", {
        ...SMALL,
        DURATION: "3s",
        BASE_URL: `http://127.0.0.1:${silent.port}`,
        TOKEN: "s3cret",
      });

      expect(run.exitCode).not.toBe(0);
      expect(run.metrics.session_success?.value).toBe(1);
      expect(run.metrics.chat_messages_received?.count ?? 0).toBe(0);
      expect(urls.length).toBeGreaterThan(0);
      // The scripts ask for batched frames by default, as the client library does.
      for (const url of urls)
        expect(url).toMatch(/\/ws\/chat\/[A-Za-z0-9_-]{8,64}\?user=k6-user-\d+&token=s3cret&batch=1$/);
    } finally {
      silent.stop(true);
    }
  }, 60_000);
});
