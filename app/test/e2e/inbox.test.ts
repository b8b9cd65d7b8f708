// The compiled binary on SQLite: a direct message to a user who is offline is committed before it
// is acknowledged, survives a SIGKILL and a restart, and is delivered once when the user resumes;
// a resend across the restart is still a duplicate.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type RunningBinary, startBinary } from "../helpers/binary";
import { TestClient } from "../helpers/client";
import { connId } from "../helpers/server";

const dataDir = mkdtempSync(join(tmpdir(), "chat-e2e-inbox-"));
const running: RunningBinary[] = [];
afterAll(async () => {
  await Promise.all(running.map((b) => b.stop("SIGKILL")));
  rmSync(dataDir, { recursive: true, force: true });
});
async function start() {
  const binary = await startBinary({ DATA_DIR: dataDir, LOG_LEVEL: "warn" });
  running.push(binary);
  return binary;
}
const ws = (binary: RunningBinary, user: string) =>
  TestClient.connect(`ws://127.0.0.1:${binary.port}/ws/chat/${connId()}?user=${user}`);

test("a direct message to an offline user survives a SIGKILL and a restart and is delivered once on resume", async () => {
  const first = await start();
  const bob = await ws(first, "bob");
  const { epoch } = await bob.request({ type: "inbox" });
  await bob.close();
  const alice = await ws(first, "alice");
  const acks = [];
  for (let i = 1; i <= 3; i++)
    acks.push(await alice.request({ type: "direct", to: "bob", text: `while away ${i}`, clientMsgId: `d${i}` }));
  expect(acks.map((a) => a.offset)).toEqual([1, 2, 3]);
  alice.close();
  // No drain: only what was committed before each ack can be there afterwards.
  expect(await first.stop("SIGKILL")).not.toBe(0);

  const second = await start();
  const back = await ws(second, "bob");
  const resumed = await back.request({ type: "inbox", lastOffset: 0, epoch });
  expect(resumed).toMatchObject({ ok: true, epoch, offset: 3, recovered: true });
  expect(back.all("direct").map((f) => [f.id, f.text, f.offset])).toEqual(
    acks.map((a, i) => [a.id, `while away ${i + 1}`, i + 1]),
  );
  // The sender's resend of an acknowledged message is a duplicate, delivered nowhere again.
  const aliceAgain = await ws(second, "alice");
  const resent = await aliceAgain.request({ type: "direct", to: "bob", text: "while away 3", clientMsgId: "d3" });
  expect(resent).toMatchObject({ ok: true, duplicate: true, id: acks[2]!.id, offset: 3 });
  const next = await aliceAgain.request({ type: "direct", to: "bob", text: "welcome back", clientMsgId: "d4" });
  expect(await back.next((f) => f.type === "direct" && f.id === next.id)).toMatchObject({ offset: 4, epoch });
  await back.sync();
  // Bob was sent the three replayed messages and the new one, each once.
  expect(back.all("direct").map((f) => f.offset)).toEqual([1, 2, 3]);
  // The sender's own inbox holds both sides of what they sent, for their other devices.
  const aliceTab = await ws(second, "alice");
  const own = await aliceTab.request({ type: "inbox", lastOffset: 0 });
  expect(own).toMatchObject({ offset: 4, recovered: true });
  expect(aliceTab.all("direct").map((f) => f.text)).toEqual([
    "while away 1",
    "while away 2",
    "while away 3",
    "welcome back",
  ]);
  back.close();
  aliceAgain.close();
  aliceTab.close();
  expect(await second.stop("SIGTERM")).toBe(0);
}, 30_000);
