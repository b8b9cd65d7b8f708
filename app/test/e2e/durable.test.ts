// The compiled binary on its default store, SQLite under DATA_DIR: acknowledged messages survive a
// SIGKILL and a restart, a client resumes from an offset older than the hot window, and a database
// that cannot be opened stops the start with one line and exit code 4.
import { Database } from "bun:sqlite";
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SQLITE_MIGRATIONS } from "../../src/store/migrations";
import { SQLITE_FILE } from "../../src/store/sqlite";
import { BINARY, type RunningBinary, startBinary } from "../helpers/binary";
import { TestClient } from "../helpers/client";
import { connId } from "../helpers/server";

const dirs: string[] = [];
const running: RunningBinary[] = [];
afterAll(async () => {
  await Promise.all(running.map((b) => b.stop("SIGKILL")));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
function tempDir() {
  const dir = mkdtempSync(join(tmpdir(), "chat-e2e-durable-"));
  dirs.push(dir);
  return dir;
}
async function start(dataDir: string, env: Record<string, string> = {}) {
  const binary = await startBinary({ DATA_DIR: dataDir, HISTORY_SIZE: "5", LOG_LEVEL: "warn", ...env });
  running.push(binary);
  return binary;
}
const ws = (binary: RunningBinary, user: string) =>
  TestClient.connect(`ws://127.0.0.1:${binary.port}/ws/chat/${connId()}?user=${user}`);

// normal: the commit is not synced to disk, but it is in the operating system's cache, which a
// killed process does not take with it.
for (const synchronous of ["full", "normal"])
  test(`SQLITE_SYNCHRONOUS=${synchronous}: history, offsets and the dedup window survive a SIGKILL and a restart; a client resumes from an old offset`, async () => {
    const dataDir = tempDir();
    const first = await start(dataDir, { SQLITE_SYNCHRONOUS: synchronous });
    expect(await (await fetch(`${first.httpUrl}/health`)).json()).toMatchObject({ store: "sqlite" });
    const writer = await ws(first, "writer");
    const joined = await writer.request({ type: "join", room: "lobby" });
    const acks = [];
    for (let i = 1; i <= 20; i++)
      acks.push(await writer.request({ type: "message", room: "lobby", text: `m${i}`, clientMsgId: `m${i}` }));
    expect(acks.map((a) => a.offset)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    writer.close();
    // No drain, no flush at exit: only what was committed before each ack can be there afterwards.
    expect(await first.stop("SIGKILL")).not.toBe(0);

    const second = await start(dataDir, { SQLITE_SYNCHRONOUS: synchronous });
    const reader = await ws(second, "reader");
    const resumed = await reader.request({ type: "join", room: "lobby", lastOffset: 3, epoch: joined.epoch });
    expect(resumed).toMatchObject({ ok: true, epoch: joined.epoch, offset: 20, recovered: true });
    expect(reader.all("message").map((m) => m.text)).toEqual(Array.from({ length: 17 }, (_, i) => `m${i + 4}`));
    const page = await reader.request({ type: "history", room: "lobby", before: 4, limit: 10 });
    expect(page.messages.map((m: { text: string }) => m.text)).toEqual(["m1", "m2", "m3"]);
    expect(page.hasMore).toBe(false);
    // The writer's resend of a message acknowledged before the crash is still a duplicate.
    const writerAgain = await ws(second, "writer");
    await writerAgain.request({ type: "join", room: "lobby" });
    const resent = await writerAgain.request({ type: "message", room: "lobby", text: "m20", clientMsgId: "m20" });
    expect(resent).toMatchObject({ ok: true, offset: 20, id: acks[19]!.id, duplicate: true });
    writerAgain.close();
    const next = await reader.request({ type: "message", room: "lobby", text: "after restart", clientMsgId: "r1" });
    expect(next.offset).toBe(21);
    reader.close();
    expect(await second.stop("SIGTERM")).toBe(0);
  });

async function run(dataDir: string) {
  const proc = Bun.spawn([BINARY], {
    env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", PORT: "0", DATA_DIR: dataDir },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  return { code, stderr };
}

test("a DATA_DIR that cannot be created stops the start with one line and exit code 4", async () => {
  const file = join(tempDir(), "a-file");
  writeFileSync(file, "");
  const result = await run(join(file, "data"));
  expect(result.code).toBe(4);
  expect(result.stderr).toStartWith(`error: cannot open the message database ${join(file, "data", SQLITE_FILE)}: `);
  expect(result.stderr.trim().split("\n")).toHaveLength(1);
});

test("a database written by a newer release is refused, not used", async () => {
  const dataDir = tempDir();
  const first = await start(dataDir);
  expect(await first.stop("SIGTERM")).toBe(0);
  const db = new Database(join(dataDir, SQLITE_FILE));
  db.run("INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)");
  db.close();
  expect(await run(dataDir)).toEqual({
    code: 4,
    stderr: `error: cannot open the message database ${join(dataDir, SQLITE_FILE)}: database schema version 999 is newer than this release knows (${SQLITE_MIGRATIONS.at(-1)!.version})\n`,
  });
});
