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
});
