// A long inbox replay comes in pages: at most MAX_INBOX_REPLAY messages and about
// MAX_INBOX_REPLAY_BYTES per answer, so a full inbox of long texts never overflows the socket's
// backpressure limit. Over real sockets, with the raw protocol and with the client library.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { connect } from "../../client/index";
import { MAX_INBOX_REPLAY, MAX_INBOX_REPLAY_BYTES } from "../../src/chat/handlers/inbox";
import { Recorder } from "../client/support";
import type { TestClient } from "../helpers/client";
import { connId, startTestServer, type TestServer } from "../helpers/server";

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer();
});
afterAll(async () => {
  await srv.stop();
});

async function fill(to: string, count: number, text: (i: number) => string) {
  const sender = await srv.connect(connId(), `user=${to}-sender`);
  for (let i = 1; i <= count; i++) {
    const answer = await sender.request({ type: "direct", to, text: text(i), clientMsgId: `${to}-${i}` });
    expect(answer).toMatchObject({ ok: true });
  }
  await sender.close();
}

/** Resumes from 0 and follows `more` to the end; returns the answers. */
async function resumeAll(client: TestClient) {
  const answers = [];
  let frame: Record<string, unknown> = { type: "inbox", lastOffset: 0 };
  for (;;) {
    const answer = await client.request(frame);
    expect(answer).toMatchObject({ ok: true, for: "inbox" });
    answers.push(answer);
    if (!answer.more) return answers;
    frame = { type: "inbox", lastOffset: answer.through, epoch: answer.epoch };
  }
}

test(`more than ${MAX_INBOX_REPLAY} kept messages come in pages, each once, in order`, async () => {
  const count = MAX_INBOX_REPLAY + 50;
  await fill("pg-many", count, (i) => `m${i}`);
  const client = await srv.connect(connId(), "user=pg-many");
  const answers = await resumeAll(client);
  expect(answers.map((a) => [a.replayed, a.more ?? false, a.through])).toEqual([
    [MAX_INBOX_REPLAY, true, MAX_INBOX_REPLAY],
    [50, false, undefined],
  ]);
  expect(answers.every((a) => a.recovered && a.offset === count)).toBe(true);
  expect(client.all("direct").map((f) => f.offset)).toEqual(Array.from({ length: count }, (_, i) => i + 1));
});

test("long messages are paged by size, and the connection stays open", async () => {
  const text = "y".repeat(3900);
  const count = Math.ceil((2.5 * MAX_INBOX_REPLAY_BYTES) / text.length);
  await fill("pg-long", count, (i) => `${i} ${text}`);
  const client = await srv.connect(connId(), "user=pg-long");
  const answers = await resumeAll(client);
  expect(answers.length).toBeGreaterThanOrEqual(3);
  expect(client.all("direct").map((f) => f.offset)).toEqual(Array.from({ length: count }, (_, i) => i + 1));
  await client.sync();
});

test("the client library follows the pages and emits every message once, then one inbox event", async () => {
  const count = MAX_INBOX_REPLAY + 20;
  await fill("pg-lib", count, (i) => `m${i}`);
  const client = connect(srv.httpUrl, { connectionId: connId("pg-lib"), user: "pg-lib" });
  const events = new Recorder(client);
  try {
    expect(await events.next("inbox")).toMatchObject({ offset: count, recovered: true });
    expect(events.all("direct").map((d) => d.text)).toEqual(Array.from({ length: count }, (_, i) => `m${i + 1}`));
    expect(events.all("inbox")).toHaveLength(1);
    expect(client.inboxPosition?.offset).toBe(count);
  } finally {
    client.close();
  }
});
