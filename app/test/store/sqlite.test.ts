// The SQLite message database on real files: versioned migrations (idempotent, safe with two
// processes starting at once, refusing a newer schema), idempotent writes, one commit per turn,
// and a retention that deletes messages without moving a room's head.
import { Database } from "bun:sqlite";
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { frames, type RoomMessage } from "../../src/protocol/server-frames";
import { migrate, SQLITE_MIGRATIONS } from "../../src/store/migrations";
import { SQLITE_FILE, SqliteMessageStore } from "../../src/store/sqlite";
import { waitFor } from "../helpers/wait";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
function dataDir() {
  const dir = mkdtempSync(join(tmpdir(), "chat-sqlite-"));
  dirs.push(dir);
  return dir;
}

const message = (room: string, offset: number, ts = 1_000 + offset): RoomMessage => ({
  room,
  id: `id-${room}-${offset}`,
  offset,
  from: "alice",
  text: `text ${offset}`,
  ts,
  clientMsgId: `c-${offset}`,
});

const versions = (file: string) => {
  const db = new Database(file, { readonly: true });
  const rows = db.query("SELECT version FROM schema_migrations ORDER BY version").all() as { version: number }[];
  db.close();
  return rows.map((r) => r.version);
};

test("migrations run once: a second open finds the schema current and keeps the data", async () => {
  const dir = dataDir();
  const first = SqliteMessageStore.open(dir);
  await first.write("e1", message("r", 1));
  await first.close();
  const db = new Database(join(dir, SQLITE_FILE));
  expect(migrate(db)).toEqual({ from: SQLITE_MIGRATIONS.at(-1)!.version, to: SQLITE_MIGRATIONS.at(-1)!.version });
  db.close();
  const second = SqliteMessageStore.open(dir);
  expect(second.head("r")).toEqual({ epoch: "e1", offset: 1 });
  await second.close();
  expect(versions(join(dir, SQLITE_FILE))).toEqual(SQLITE_MIGRATIONS.map((m) => m.version));
});

test("two processes opening a new database at once both start, and each step is applied once", async () => {
  const dir = dataDir();
  const script = `
    const { SqliteMessageStore } = await import(${JSON.stringify(join(import.meta.dir, "../../src/store/sqlite.ts"))});
    const store = SqliteMessageStore.open(process.argv[1]);
    await store.write("e", { room: "r", id: process.pid + "", offset: Number(process.argv[2]), from: "a", text: "t", ts: 1, clientMsgId: "c" });
    await store.close();
  `;
  const procs = [1, 2].map((n) =>
    Bun.spawn([process.execPath, "-e", script, dir, String(n)], { stdout: "pipe", stderr: "pipe" }),
  );
  const codes = await Promise.all(procs.map((p) => p.exited));
  const errors = await Promise.all(procs.map((p) => new Response(p.stderr).text()));
  expect({ codes, errors }).toEqual({ codes: [0, 0], errors: ["", ""] });
  expect(versions(join(dir, SQLITE_FILE))).toEqual(SQLITE_MIGRATIONS.map((m) => m.version));
  const store = SqliteMessageStore.open(dir);
  expect(store.after("r", "e", 0, 10, 10).messages.map((m) => m.offset)).toEqual([1, 2]);
  await store.close();
});

test("a database written by a newer release is refused with its version", async () => {
  const dir = dataDir();
  await SqliteMessageStore.open(dir).close();
  const db = new Database(join(dir, SQLITE_FILE));
  db.run("INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)");
  db.close();
  expect(() => SqliteMessageStore.open(dir)).toThrow(
    `database schema version 999 is newer than this release knows (${SQLITE_MIGRATIONS.at(-1)!.version})`,
  );
});

test("a message written twice is stored once, and the head only moves forward", async () => {
  const store = SqliteMessageStore.open(dataDir());
  await Promise.all([store.write("e", message("r", 1)), store.write("e", message("r", 2))]);
  await store.write("e", { ...message("r", 1), text: "a second copy" });
  await store.write("e", message("r", 1));
  expect(store.after("r", "e", 0, 100, 100).messages).toEqual([message("r", 1), message("r", 2)]);
  expect(store.head("r")).toEqual({ epoch: "e", offset: 2 });
  expect(store.head("other")).toBeUndefined();
  await store.close();
});

test("writes made in one turn share one commit, and each resolves after it", async () => {
  const store = SqliteMessageStore.open(dataDir());
  const writes = Array.from({ length: 200 }, (_, i) => store.write("e", message(`room-${i % 7}`, i + 1)));
  expect(store.stats).toMatchObject({ batches: 0, queued: 200 });
  await Promise.all(writes);
  expect(store.stats).toMatchObject({ batches: 1, messages: 200, queued: 0 });
  await store.close();
});

/** Text that JSON escapes, and that ends a JSON array if it is not escaped. */
const TRICKY = 'a "quote", a \\ backslash,\na newline, 🙂 and "],["e",{}]';

test("writeThen calls back in write order once the commit is on disk, and with the error of a refused one", async () => {
  const dir = dataDir();
  const store = SqliteMessageStore.open(dir);
  const order: number[] = [];
  const all = new Promise<void>((resolve) => {
    for (let i = 1; i <= 300; i++) {
      const m = i === 7 ? { ...message("r", 7), text: TRICKY } : message("r", i);
      store.writeThen("e", m, frames.message(m), (error) => {
        expect(error).toBeUndefined();
        order.push(i);
        if (i === 300) resolve();
      });
    }
  });
  expect(order).toEqual([]);
  await all;
  expect(order).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
  // Committed before the first callback: another connection reads every one of them.
  const reader = new Database(join(dir, SQLITE_FILE), { readonly: true });
  expect(reader.query("SELECT count(*) AS n FROM messages").get()).toEqual({ n: 300 });
  expect(
    reader
      .query(`SELECT room, epoch, "offset", id, sender, text, ts, client_msg_id FROM messages WHERE "offset" = 7`)
      .get(),
  ).toEqual({
    room: "r",
    epoch: "e",
    offset: 7,
    id: "id-r-7",
    sender: "alice",
    text: TRICKY,
    ts: 1_007,
    client_msg_id: "c-7",
  });
  reader.close();
  store.db.run("CREATE TRIGGER refuse BEFORE INSERT ON messages BEGIN SELECT RAISE(ABORT, 'refused by test'); END");
  const refused = await new Promise<Error | undefined>((resolve) =>
    store.writeThen("e", message("r", 301), frames.message(message("r", 301)), resolve),
  );
  expect(refused?.message).toContain("refused by test");
  await store.close();
  const closed = await new Promise<Error | undefined>((resolve) =>
    store.writeThen("e", message("r", 302), frames.message(message("r", 302)), resolve),
  );
  expect(closed?.message).toContain("closed");
});

test("pages read back in both directions with hasMore", async () => {
  const store = SqliteMessageStore.open(dataDir());
  await Promise.all(Array.from({ length: 10 }, (_, i) => store.write("e", message("r", i + 1))));
  await store.write("other-epoch", message("r", 3));
  const older = store.before("r", "e", 8, 3);
  expect({ offsets: older.messages.map((m) => m.offset), hasMore: older.hasMore }).toEqual({
    offsets: [5, 6, 7],
    hasMore: true,
  });
  const first = store.before("r", "e", 3, 5);
  expect({ offsets: first.messages.map((m) => m.offset), hasMore: first.hasMore }).toEqual({
    offsets: [1, 2],
    hasMore: false,
  });
  const newer = store.after("r", "e", 6, 11, 3);
  expect({ offsets: newer.messages.map((m) => m.offset), hasMore: newer.hasMore }).toEqual({
    offsets: [7, 8, 9],
    hasMore: true,
  });
  await store.close();
});

test("retention deletes old messages in steps and leaves the room's head", async () => {
  const store = SqliteMessageStore.open(dataDir());
  await Promise.all(
    Array.from({ length: 12_000 }, (_, i) => store.write("e", message("r", i + 1, i < 11_000 ? 1 : 5))),
  );
  expect(await store.expire(2)).toBe(11_000);
  expect(store.stats.expired).toBe(11_000);
  expect(store.before("r", "e", 20_000, 5).messages.map((m) => m.offset)).toEqual([
    11_996, 11_997, 11_998, 11_999, 12_000,
  ]);
  expect(store.after("r", "e", 0, 20_000, 1).messages[0]!.offset).toBe(11_001);
  expect(store.head("r")).toEqual({ epoch: "e", offset: 12_000 });
  await store.close();
});

test("a write after close is refused", async () => {
  const store = SqliteMessageStore.open(dataDir());
  await store.close();
  await expect(store.write("e", message("r", 1))).rejects.toThrow(/closed/);
});

test("close commits what is queued before closing the file, and settled waits for earlier writes", async () => {
  const dir = dataDir();
  const store = SqliteMessageStore.open(dir);
  const first = store.write("e", message("r", 1));
  const settled = store.settled();
  await settled;
  await first;
  const late = Array.from({ length: 50 }, (_, i) => store.write("e", message("r", i + 2)));
  await store.close();
  await Promise.all(late);
  const reopened = SqliteMessageStore.open(dir);
  expect(reopened.head("r")).toEqual({ epoch: "e", offset: 51 });
  await reopened.close();
});

test("with a retention, opening the database deletes what is older than it", async () => {
  const dir = dataDir();
  const first = SqliteMessageStore.open(dir);
  const day = 86_400_000;
  await first.write("e", message("r", 1, Date.now() - 3 * day));
  await first.write("e", message("r", 2, Date.now() - day / 2));
  await first.close();
  const store = SqliteMessageStore.open(dir, { retentionDays: 1 });
  await waitFor(() => store.stats.expired === 1, { what: "the retention to run" });
  expect(store.after("r", "e", 0, 10, 10).messages.map((m) => m.offset)).toEqual([2]);
  expect(store.head("r")).toEqual({ epoch: "e", offset: 2 });
  await store.close();
});
