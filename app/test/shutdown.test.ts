// Graceful shutdown of the compiled binary on SIGTERM: readiness 503 at once, new upgrades refused,
// every client told `goodbye` and then closed with 1012, exit 0. A second signal exits at once.
import { describe, expect, test } from "bun:test";
import { startBinary } from "./helpers/binary";
import { TestClient } from "./helpers/client";
import { rawUpgrade } from "./helpers/http";
import { connId } from "./helpers/server";
import { waitFor } from "./helpers/wait";

const JITTER = 1000;

describe("SIGTERM", () => {
  test("clients get goodbye then 1012, readiness turns 503 during the drain, the process exits 0", async () => {
    const server = await startBinary({ DRAIN_JITTER_MS: String(JITTER), DRAIN_TIMEOUT: "6000" });
    try {
      const wsUrl = (id: string) => `ws://127.0.0.1:${server.port}/ws/chat/${id}`;
      const clients = await Promise.all([1, 2, 3].map((i) => TestClient.connect(wsUrl(connId(`drain${i}`)))));
      await clients[0]!.request({ type: "join", room: "drain" });
      expect((await fetch(`${server.httpUrl}/health/ready`)).status).toBe(200);

      server.proc.kill("SIGTERM");
      await waitFor(() => clients[0]!.all("goodbye").length > 0, { timeoutMs: 5000, what: "the first goodbye" });
      // The drain spreads its closes out: the listener still answers, and says it is not ready.
      const ready = await fetch(`${server.httpUrl}/health/ready`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ ready: false, reason: "draining" });
      expect((await (await fetch(`${server.httpUrl}/health`)).json()).status).toBe("draining");
      const refused = await rawUpgrade(server.port, `/ws/chat/${connId("late")}`);
      expect(refused.status).toBe(503);
      expect(refused.headers["retry-after"]).toBeDefined();
      expect(JSON.parse(refused.body)).toMatchObject({ error: "draining" });

      for (const client of clients) {
        const closed = await client.closed;
        expect(closed.code).toBe(1012);
        const goodbyes = client.frames.filter((f) => f.type === "goodbye");
        expect(goodbyes).toHaveLength(1);
        // The goodbye is the last frame before the close.
        expect(client.frames.at(-1)).toBe(goodbyes[0]);
        const goodbye = goodbyes[0]!;
        expect(goodbye).toMatchObject({ reason: "shutdown", reconnect: true });
        expect(Number.isInteger(goodbye.retryAfterMs)).toBe(true);
        expect(goodbye.retryAfterMs).toBeGreaterThanOrEqual(0);
        expect(goodbye.retryAfterMs).toBeLessThan(JITTER);
      }
      expect(await server.proc.exited).toBe(0);
      expect(server.output()).toContain("shutdown complete");
    } finally {
      server.proc.kill("SIGKILL");
    }
  }, 20_000);

  test("a second signal during the drain exits at once, without closing the rest", async () => {
    const server = await startBinary({ DRAIN_JITTER_MS: "0", DRAIN_TIMEOUT: "60000" });
    try {
      const wsUrl = (id: string) => `ws://127.0.0.1:${server.port}/ws/chat/${id}`;
      // Three clients are closed in three batches a second apart.
      const clients = await Promise.all([1, 2, 3].map((i) => TestClient.connect(wsUrl(connId(`twice${i}`)))));
      server.proc.kill("SIGTERM");
      await Promise.all(clients.map((c) => c.next("goodbye", 5000)));
      server.proc.kill("SIGINT");
      expect(await server.proc.exited).toBe(130);
      const codes = (await Promise.all(clients.map((c) => c.closed))).map((c) => c.code).sort();
      // The first batch got its 1012; the process was gone before the last batch was due.
      expect(codes[0]).toBe(1006);
      expect(codes).toContain(1012);
      expect(server.output()).toContain("second signal");
    } finally {
      server.proc.kill("SIGKILL");
    }
  }, 20_000);

  test("with clients connected, the health endpoints answer 503 draining through the drain until exit, with no stall", async () => {
    const server = await startBinary({ DRAIN_JITTER_MS: "0", DRAIN_TIMEOUT: "5000" });
    try {
      const wsUrl = (id: string) => `ws://127.0.0.1:${server.port}/ws/chat/${id}`;
      // Two clients: closed in two batches a second apart, so the drain lasts long enough to probe.
      const clients = await Promise.all([1, 2].map((i) => TestClient.connect(wsUrl(connId(`probe${i}`)))));
      await clients[0]!.request({ type: "join", room: "probe" });

      // Each probe opens a new connection, as a load balancer's health check does.
      const probes: { path: string; status: number | "refused"; body?: any; at: number }[] = [];
      let exited = false;
      const probe = async (path: string) => {
        try {
          const res = await fetch(`${server.httpUrl}${path}`, { headers: { connection: "close" } });
          probes.push({ path, status: res.status, body: await res.json(), at: Date.now() });
        } catch {
          probes.push({ path, status: "refused", at: Date.now() });
        }
      };
      const prober = (async () => {
        while (!exited) {
          await probe("/health/ready");
          await probe("/health");
        }
      })();

      server.proc.kill("SIGTERM");
      await waitFor(() => probes.some((p) => p.status === 503), { timeoutMs: 5000, what: "the first 503" });
      expect(await server.proc.exited).toBe(0);
      exited = true;
      await prober;
      await waitFor(() => server.output().includes('"message":"shutdown complete"'), { what: "the last log line" });

      const output = server.output();
      expect(output).not.toContain("listener stop timed out");
      const at = (message: string) => {
        const line = output.split("\n").find((l) => l.includes(`"message":"${message}"`));
        if (!line) throw new Error(`no "${message}" line in:\n${output}`);
        return Date.parse(JSON.parse(line).timestamp);
      };
      const duringDrain = probes.slice(probes.findIndex((p) => p.status === 503));
      // Only once the process is gone, after its last log line, may a probe find nothing listening.
      const refused = duringDrain.filter((p) => p.status === "refused");
      expect(refused.filter((p) => p.at < at("shutdown complete"))).toEqual([]);
      const answered = duringDrain.filter((p) => p.status !== "refused");
      // The drain lasts a second (two batches): probes answered all along it, even on a loaded machine.
      expect(answered.length).toBeGreaterThan(4);
      for (const p of answered) {
        expect(p.status).toBe(503);
        expect(p.body).toMatchObject(
          p.path === "/health" ? { status: "draining" } : { ready: false, reason: "draining" },
        );
      }
      // Closing the backends and the log is a matter of milliseconds; the stall was 2 s.
      expect(at("shutdown complete") - at("drain finished")).toBeLessThan(1000);
    } finally {
      server.proc.kill("SIGKILL");
    }
  }, 20_000);
});
