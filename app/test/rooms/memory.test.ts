// Memory mode holds state only for rooms in use: an abandoned room leaves nothing behind, a room's
// history is forgotten HISTORY_TTL after its last message (and comes back in a new epoch), and the
// history of all rooms together stays within a byte budget, reported in /metrics.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { memoryBackends } from "../../src/backends";
import type { MemoryHistoryStore } from "../../src/history/memory";
import { sample, scrape } from "../helpers/metrics";
import { connId, startTestServer, type TestServer } from "../helpers/server";
import { waitFor } from "../helpers/wait";

const BUDGET = 256 * 1024;

let srv: TestServer;
let bounded: TestServer;
beforeAll(async () => {
  srv = await startTestServer({ HISTORY_TTL: "1" });
  // A small byte budget so that a few large messages exceed it (below HISTORY_MAX_BYTES' smallest
  // value, so given to the backends rather than through the environment).
  bounded = await startTestServer({ MAX_TEXT_LENGTH: "10000" }, (config, metrics) =>
    memoryBackends({ ...config, historyMaxBytes: BUDGET }, { metrics }),
  );
});
afterAll(async () => {
  await Promise.all([srv.stop(), bounded.stop()]);
});

const historyOf = (server: TestServer) => server.server.backends.history as MemoryHistoryStore;

describe("abandoned rooms", () => {
  test("rooms joined and left without a message keep no state once released", async () => {
    const client = await srv.connect(connId(), "user=wanderer");
    for (let i = 0; i < 300; i++) {
      await client.request({ type: "join", room: `abandoned-${i}` });
      await client.request({ type: "leave", room: `abandoned-${i}` });
    }
    const closing = await srv.connect(connId(), "user=closer");
    for (let i = 0; i < 50; i++) await closing.request({ type: "join", room: `left-open-${i}` });
    await closing.close();

    expect(historyOf(srv).roomCount).toBe(0);
    const metrics = await scrape(srv.httpUrl);
    expect(metrics).toContain("history_memory_rooms 0");
    // The room order is kept a moment after the last member leaves (a quick rejoin keeps it), then freed.
    await waitFor(() => srv.server.chat.sequencer.size === 0, { timeoutMs: 8000, what: "room order released" });
  }, 10_000);

  test("a room idle past HISTORY_TTL is forgotten and comes back in a new epoch, never renumbered", async () => {
    const client = await srv.connect(connId(), "user=idler");
    const joined = await client.request({ type: "join", room: "idle-room" });
    const first = await client.request({ type: "message", room: "idle-room", text: "one", clientMsgId: "i-1" });
    expect(first.offset).toBe(1);
    await client.next("message");
    expect(historyOf(srv).roomCount).toBe(1);
    // Expiry is the passing of time itself: the room is swept once HISTORY_TTL (1 s) has passed.
    await waitFor(
      async () => {
        await historyOf(srv).head("probe");
        return historyOf(srv).roomCount === 0;
      },
      { timeoutMs: 3000, what: "the idle room forgotten" },
    );
    const again = await client.request({ type: "join", room: "idle-room", lastOffset: 1, epoch: joined.epoch });
    expect(again).toMatchObject({ recovered: false, offset: 0 });
    expect(again.epoch).not.toBe(joined.epoch);
    const next = await client.request({ type: "message", room: "idle-room", text: "two", clientMsgId: "i-2" });
    expect(next.offset).toBe(1);
    expect((await client.next("message")).text).toBe("two");
  }, 10_000);
});

describe("history byte budget", () => {
  test("large messages evict the oldest ones across rooms; bytes and evictions are in /metrics", async () => {
    const client = await bounded.connect(connId(), "user=bulky");
    const text = "x".repeat(9_900);
    for (const room of ["bulk-a", "bulk-b", "bulk-c"]) {
      await client.request({ type: "join", room });
      for (let i = 1; i <= 10; i++) {
        expect(await client.request({ type: "message", room, text, clientMsgId: `${room}-${i}` })).toMatchObject({
          offset: i,
        });
      }
    }
    const metrics = await scrape(bounded.httpUrl);
    const bytes = sample(metrics, "history_memory_bytes");
    expect(bytes).toBeGreaterThan(BUDGET / 2);
    expect(bytes).toBeLessThanOrEqual(BUDGET);
    expect(sample(metrics, "history_memory_evicted_total")).toBeGreaterThan(0);
    // The oldest room lost its history first; the newest keeps its latest messages.
    expect(await client.request({ type: "join", room: "bulk-a", lastOffset: 0 })).toMatchObject({ recovered: false });
    const newest = await client.request({ type: "history", room: "bulk-c" });
    expect(newest.messages.at(-1).offset).toBe(10);
  });
});
