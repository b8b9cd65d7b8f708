// Joining with lastOffset: the missed messages are replayed in order before the answer and the
// answer says recovered true, or nothing is replayed and it says recovered false.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { TestClient } from "../helpers/client";
import { sample, scrape } from "../helpers/metrics";
import { connId, startTestServer, type TestServer } from "../helpers/server";

const HISTORY_SIZE = 3;
let srv: TestServer;
let writer: TestClient;
beforeAll(async () => {
  srv = await startTestServer({ HISTORY_SIZE: String(HISTORY_SIZE) });
  writer = await srv.connect(connId(), "user=writer");
});
afterAll(() => srv.stop());

/** A room holding `count` messages (offsets 1..count), written by `writer`. */
async function roomWith(room: string, count: number) {
  const joined = await writer.request({ type: "join", room });
  for (let i = 1; i <= count; i++)
    await writer.request({ type: "message", room, text: `${room}-${i}`, clientMsgId: `${room}-${i}` });
  return { epoch: joined.epoch as string };
}

/** Joins with the given fields; returns the message frames that came before the answer, and the answer. */
async function joinFrom(room: string, fields: Record<string, unknown>) {
  const reader = await srv.connect(connId(), "user=reader");
  const answer = await reader.request({ type: "join", room, ...fields });
  const replayed = reader.all("message");
  return { reader, answer, replayed };
}

test("a lastOffset within history replays every later message in order, then recovered true", async () => {
  const { epoch } = await roomWith("rp-ok", 3);
  const { answer, replayed } = await joinFrom("rp-ok", { lastOffset: 1, epoch });
  expect(replayed.map((m) => [m.offset, m.text])).toEqual([
    [2, "rp-ok-2"],
    [3, "rp-ok-3"],
  ]);
  expect(replayed[0]).toMatchObject({ type: "message", room: "rp-ok", from: "writer", clientMsgId: "rp-ok-2" });
  expect(answer).toMatchObject({
    type: "message_response",
    ok: true,
    for: "join",
    room: "rp-ok",
    epoch,
    offset: 3,
    recovered: true,
  });
});

test("without an epoch the current one is assumed", async () => {
  await roomWith("rp-noepoch", 2);
  const { answer, replayed } = await joinFrom("rp-noepoch", { lastOffset: 0 });
  expect(replayed.map((m) => m.offset)).toEqual([1, 2]);
  expect(answer.recovered).toBe(true);
});

test("a lastOffset at the head replays nothing and is recovered", async () => {
  const { epoch } = await roomWith("rp-head", 2);
  const { reader, answer, replayed } = await joinFrom("rp-head", { lastOffset: 2, epoch });
  expect(replayed).toEqual([]);
  expect(answer).toMatchObject({ offset: 2, recovered: true });
  // Messages after the join arrive live, once.
  await writer.request({ type: "message", room: "rp-head", text: "live", clientMsgId: "rp-head-live" });
  expect(await reader.next("message")).toMatchObject({ offset: 3, text: "live" });
  await reader.sync();
  expect(reader.all("message")).toEqual([]);
});

test("messages older than HISTORY_SIZE are gone: recovered false and nothing replayed", async () => {
  const { epoch } = await roomWith("rp-overflow", HISTORY_SIZE + 2);
  const { reader, answer, replayed } = await joinFrom("rp-overflow", { lastOffset: 1, epoch });
  expect(replayed).toEqual([]);
  expect(answer).toMatchObject({ for: "join", epoch, offset: HISTORY_SIZE + 2, recovered: false });
  // What is left can still be read as history: the newest HISTORY_SIZE messages.
  const history = await reader.request({ type: "history", room: "rp-overflow" });
  expect(history.messages.map((m: { offset: number }) => m.offset)).toEqual([3, 4, 5]);
  expect(history.hasMore).toBe(false);
});

test("the oldest kept message is enough: a lastOffset just before it recovers", async () => {
  const { epoch } = await roomWith("rp-edge", HISTORY_SIZE + 2);
  const { answer, replayed } = await joinFrom("rp-edge", { lastOffset: 2, epoch });
  expect(replayed.map((m) => m.offset)).toEqual([3, 4, 5]);
  expect(answer.recovered).toBe(true);
});

test("another epoch is recovered false with nothing replayed, and the answer names the current epoch", async () => {
  const { epoch } = await roomWith("rp-epoch", 2);
  const { answer, replayed } = await joinFrom("rp-epoch", { lastOffset: 1, epoch: "some-older-epoch" });
  expect(replayed).toEqual([]);
  expect(answer).toMatchObject({ epoch, offset: 2, recovered: false });
});

test("a lastOffset beyond the head is recovered false", async () => {
  const { epoch } = await roomWith("rp-ahead", 1);
  const { answer, replayed } = await joinFrom("rp-ahead", { lastOffset: 9, epoch });
  expect(replayed).toEqual([]);
  expect(answer.recovered).toBe(false);
});

test("join without lastOffset answers recovered false and replays nothing", async () => {
  await roomWith("rp-plain", 2);
  const { answer, replayed } = await joinFrom("rp-plain", {});
  expect(replayed).toEqual([]);
  expect(answer).toMatchObject({ offset: 2, recovered: false });
});

test("resume_total counts joins with lastOffset by outcome", async () => {
  const metrics = await scrape(srv.httpUrl);
  expect(sample(metrics, "resume_total", { recovered: "true" })).toBe(4);
  expect(sample(metrics, "resume_total", { recovered: "false" })).toBe(3);
});
