// A server on SQLite with a hot window of 3 messages per room, over real sockets: `history` pages
// back through everything stored, `join` replays from the database past the window, and a commit
// the database refuses is not acknowledged, while the sender's resend stores it exactly once.
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAX_REPLAY } from "../../src/history/durable";
import { createLogger } from "../../src/observability/logger";
import { sqliteBackends } from "../../src/server";
import { SQLITE_FILE } from "../../src/store/sqlite";
import type { TestClient } from "../helpers/client";
import { sample, scrape } from "../helpers/metrics";
import { connId, startTestServer, type TestServer } from "../helpers/server";

const dataDir = mkdtempSync(join(tmpdir(), "chat-durable-"));
let srv: TestServer;
let writer: TestClient;
beforeAll(async () => {
  srv = await startTestServer({ HISTORY_SIZE: "3", DATA_DIR: dataDir }, (config, metrics) =>
    sqliteBackends(config, { metrics, logger: createLogger(config) }),
  );
  writer = await srv.connect(connId(), "user=writer");
});
afterAll(async () => {
  await srv.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

async function roomWith(room: string, count: number) {
  const joined = await writer.request({ type: "join", room });
  for (let i = 1; i <= count; i++)
    await writer.request({ type: "message", room, text: `${room}-${i}`, clientMsgId: `${room}-${i}` });
  return { epoch: joined.epoch as string };
}

test("history pages back past the hot window through every stored message", async () => {
  await roomWith("dh-pages", 10);
  const reader = await srv.connect(connId(), "user=reader");
  await reader.request({ type: "join", room: "dh-pages" });
  const pages: number[][] = [];
  let before: number | undefined;
  for (;;) {
    const page = await reader.request({ type: "history", room: "dh-pages", limit: 4, ...(before ? { before } : {}) });
    pages.push(page.messages.map((m: { offset: number }) => m.offset));
    if (!page.hasMore) break;
    before = page.messages[0].offset;
  }
  expect(pages).toEqual([
    [7, 8, 9, 10],
    [3, 4, 5, 6],
    [1, 2],
  ]);
  const old = await reader.request({ type: "history", room: "dh-pages", before: 3, limit: 100 });
  expect(old.messages.map((m: { text: string }) => m.text)).toEqual(["dh-pages-1", "dh-pages-2"]);
  expect(old.messages[0]).toMatchObject({ room: "dh-pages", from: "writer", clientMsgId: "dh-pages-1" });
});

test("join with an offset older than the hot window replays from the database, recovered", async () => {
  const { epoch } = await roomWith("dh-replay", 9);
  const reader = await srv.connect(connId(), "user=reader");
  const answer = await reader.request({ type: "join", room: "dh-replay", lastOffset: 2, epoch });
  expect(reader.all("message").map((m) => m.offset)).toEqual([3, 4, 5, 6, 7, 8, 9]);
  expect(answer).toMatchObject({ ok: true, epoch, offset: 9, recovered: true });
});

test("a client further behind than MAX_REPLAY is told recovered false and pages instead", async () => {
  const room = "dh-far";
  const joined = await writer.request({ type: "join", room });
  // Written straight into the database file: MAX_REPLAY + 2 messages through sockets would be slow.
  const db = new Database(join(dataDir, SQLITE_FILE));
  const insert = db.prepare(
    `INSERT INTO messages (room, epoch, "offset", id, sender, text, ts, client_msg_id) VALUES (?, ?, ?, ?, 'w', 't', 1, ?)`,
  );
  db.transaction(() => {
    for (let i = 1; i <= MAX_REPLAY + 1; i++) insert.run(room, joined.epoch, i, `id-${i}`, `c-${i}`);
  })();
  db.run("INSERT INTO rooms (room, epoch, head) VALUES (?, ?, ?)", [room, joined.epoch, MAX_REPLAY + 1]);
  db.close();
  // The room is not in memory yet (no message was sent), so it resumes from the database's head.
  await writer.request({ type: "message", room, text: "newest", clientMsgId: "far-newest" });
  const reader = await srv.connect(connId(), "user=reader");
  const far = await reader.request({ type: "join", room, lastOffset: 0, epoch: joined.epoch });
  expect(far).toMatchObject({ offset: MAX_REPLAY + 2, recovered: false });
  expect(reader.all("message")).toEqual([]);
  const near = await reader.request({ type: "join", room, lastOffset: 5, epoch: joined.epoch });
  expect(near.recovered).toBe(true);
  expect(reader.all("message").length).toBe(MAX_REPLAY - 3);
});

test("a refused commit is not acknowledged; the resend stores the message once and is acknowledged", async () => {
  const room = "dh-refused";
  await roomWith(room, 1);
  // Another connection to the same file makes every insert fail, as a full disk would.
  const db = new Database(join(dataDir, SQLITE_FILE));
  db.run("CREATE TRIGGER refuse BEFORE INSERT ON messages BEGIN SELECT RAISE(ABORT, 'refused by test'); END");
  const frame = { type: "message", room, text: "kept", clientMsgId: "refused-1" };
  const refused = await writer.request(frame);
  expect(refused).toMatchObject({ type: "error", code: "unavailable" });
  const again = await writer.request(frame);
  expect(again).toMatchObject({ type: "error", code: "unavailable" });
  db.run("DROP TRIGGER refuse");
  const stored = await writer.request(frame);
  expect(stored).toMatchObject({ ok: true, for: "message", offset: 2, duplicate: true });
  const rows = db.query(`SELECT "offset", text FROM messages WHERE room = ? ORDER BY "offset"`).all(room);
  db.close();
  expect(rows).toEqual([
    { offset: 1, text: `${room}-1` },
    { offset: 2, text: "kept" },
  ]);
  const metrics = await scrape(srv.httpUrl);
  expect(sample(metrics, "store_write_errors_total")).toBeGreaterThanOrEqual(2);
  // The commits that went through are in the commit histograms, the refused ones are not.
  const commits = sample(metrics, "store_write_seconds_count");
  expect(commits).toBeGreaterThanOrEqual(2);
  expect(sample(metrics, "store_write_batch_messages_bucket", { le: "+Inf" })).toBe(commits);
  expect(sample(metrics, "store_write_batch_messages_sum")).toBeGreaterThanOrEqual(2);
});
