// Invalid client frames: each gets an `error` frame with a stable code and the ref, the connection
// stays open, and only repeated abuse (1003) or an oversized frame (1009) closes it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { memoryBackends } from "../../src/server";
import type { TestClient } from "../helpers/client";
import { connId, startTestServer, type TestServer } from "../helpers/server";

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer({ MAX_TEXT_LENGTH: "10", MAX_MESSAGE_BYTES: "1024", MAX_ROOMS_PER_CONNECTION: "2" });
});
afterAll(() => srv.stop());

async function expectStillServing(client: TestClient) {
  expect((await client.request({ type: "ping" })).type).toBe("pong");
}

describe("error codes", () => {
  test("invalid_json for text that is not JSON, without a ref", async () => {
    const client = await srv.connect();
    for (const raw of ['{"type":"ping"', "{type:ping}", "", "nul", "{'type':'ping'}"]) {
      client.send(raw);
      expect(await client.next("error")).toEqual({
        type: "error",
        code: "invalid_json",
        message: "frame is not valid JSON",
        temporary: false,
      });
    }
    await expectStillServing(client);
  });

  test("invalid_frame for JSON that is not an object", async () => {
    const client = await srv.connect();
    for (const raw of ["42", "1e400", "[]", '[{"type":"ping"}]', "null", "true"]) {
      client.send(raw);
      expect(await client.next("error")).toMatchObject({ code: "invalid_frame", temporary: false });
    }
    await expectStillServing(client);
  });

  test("invalid_frame with the ref for a missing or non-string type", async () => {
    const client = await srv.connect();
    for (const frame of [{ ref: "a" }, { type: 1, ref: "a" }, { type: null, ref: "a" }, { type: ["ping"], ref: "a" }]) {
      client.send(frame);
      expect(await client.next("error")).toMatchObject({ code: "invalid_frame", ref: "a", temporary: false });
    }
    await expectStillServing(client);
  });

  test("unknown_type with the ref, including names of Object.prototype members", async () => {
    const client = await srv.connect();
    for (const type of ["shout", "JOIN", "", "__proto__", "constructor", "toString", "hasOwnProperty"]) {
      const answer = await client.request({ type });
      expect(answer).toMatchObject({ type: "error", code: "unknown_type", temporary: false });
    }
    await expectStillServing(client);
  });

  test("invalid_frame with the ref for a wrong field, a missing field or an extra field", async () => {
    const bad: Record<string, unknown>[] = [
      { type: "join" },
      { type: "join", room: "" },
      { type: "join", room: "has space" },
      { type: "join", room: "x".repeat(65) },
      { type: "join", room: 5 },
      { type: "join", room: "ok", lastOffset: -1 },
      { type: "join", room: "ok", lastOffset: 1.5 },
      { type: "join", room: "ok", lastOffset: "3" },
      { type: "join", room: "ok", epoch: "" },
      { type: "leave", room: { room: "ok" } },
      { type: "message", room: "ok", text: "hi" },
      { type: "message", room: "ok", text: "", clientMsgId: "c" },
      { type: "message", room: "ok", text: 1, clientMsgId: "c" },
      { type: "message", room: "ok", text: "hi", clientMsgId: "" },
      { type: "direct", to: "", text: "hi", clientMsgId: "c" },
      { type: "direct", to: "u".repeat(65), text: "hi", clientMsgId: "c" },
      { type: "inbox", lastOffset: -1 },
      { type: "inbox", lastOffset: "3" },
      { type: "inbox", epoch: "" },
      { type: "inbox", lastOffset: 1, room: "ok" },
      { type: "typing", room: "ok", active: "yes" },
      { type: "read", room: "ok", offset: -5 },
      { type: "read", room: "ok", offset: "5" },
      { type: "history", room: "ok", limit: "5" },
      { type: "history", room: "ok", before: "9" },
      { type: "history", room: "ok", limit: 0 },
      { type: "history", room: "ok", limit: 101 },
      { type: "history", room: "ok", before: 0 },
      { type: "presence" },
      { type: "ping", extra: true },
    ];
    // A fresh client per batch of eight keeps the 1003 limit out of this test.
    for (let i = 0; i < bad.length; i += 8) {
      const client = await srv.connect();
      for (const frame of bad.slice(i, i + 8)) {
        const answer = await client.request(frame);
        expect(answer, JSON.stringify(frame)).toMatchObject({ type: "error", code: "invalid_frame", temporary: false });
        expect(answer.message.startsWith(`${frame.type}: `)).toBe(true);
      }
      await expectStillServing(client);
    }
  });

  test("a ref that is not a string of at most 64 characters is refused and not echoed", async () => {
    const client = await srv.connect();
    for (const ref of ["r".repeat(65), 7, { id: 1 }]) {
      client.send({ type: "ping", ref });
      const answer = await client.next("error");
      expect(answer.code).toBe("invalid_frame");
      expect(answer.ref).toBeUndefined();
    }
    client.send({ type: "ping", ref: "r".repeat(64) });
    expect((await client.next("pong")).ref).toBe("r".repeat(64));
  });

  test("__proto__ and constructor keys are refused as extra fields and pollute nothing", async () => {
    const client = await srv.connect();
    const frames = [
      '{"type":"ping","ref":"p1","__proto__":{"polluted":"yes"}}',
      '{"type":"join","ref":"p2","room":"ok","constructor":{"prototype":{"polluted":"yes"}}}',
      '{"type":"ping","ref":"p3","__proto__":null}',
    ];
    for (const [i, raw] of frames.entries()) {
      client.send(raw);
      expect(await client.next("error")).toMatchObject({ code: "invalid_frame", ref: `p${i + 1}` });
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.hasOwn(Object.prototype, "polluted")).toBe(false);
    await expectStillServing(client);
  });

  test("binary_not_supported for a binary frame, even one holding valid JSON", async () => {
    const client = await srv.connect();
    client.ws.send(new Uint8Array([0, 1, 2, 255]));
    expect(await client.next("error")).toMatchObject({ code: "binary_not_supported", temporary: false });
    client.ws.send(new TextEncoder().encode(JSON.stringify({ type: "ping", ref: "b" })));
    expect(await client.next("error")).toMatchObject({ code: "binary_not_supported" });
    await expectStillServing(client);
  });

  test("text_too_long above MAX_TEXT_LENGTH characters, counted in code points", async () => {
    const client = await srv.connect(connId(), "user=long");
    await client.request({ type: "join", room: "val-long" });
    const tooLong = await client.request({
      type: "message",
      room: "val-long",
      text: "x".repeat(11),
      clientMsgId: "l-1",
    });
    expect(tooLong).toMatchObject({ type: "error", code: "text_too_long", temporary: false });
    const direct = await client.request({ type: "direct", to: "someone", text: "y".repeat(11), clientMsgId: "l-2" });
    expect(direct.code).toBe("text_too_long");
    // Ten emoji are ten characters although they are twenty UTF-16 units.
    const emoji = "😀".repeat(10);
    const fits = await client.request({ type: "message", room: "val-long", text: emoji, clientMsgId: "l-3" });
    expect(fits).toMatchObject({ type: "message_response", ok: true, for: "message" });
    expect((await client.next("message")).text).toBe(emoji);
  });

  test("not_in_room for every room-scoped request but join", async () => {
    const client = await srv.connect();
    const requests = [
      { type: "leave", room: "val-elsewhere" },
      { type: "message", room: "val-elsewhere", text: "hi", clientMsgId: "n-1" },
      { type: "typing", room: "val-elsewhere", active: true },
      { type: "read", room: "val-elsewhere", offset: 1 },
      { type: "history", room: "val-elsewhere" },
      { type: "presence", room: "val-elsewhere" },
    ];
    // Refused requests are not invalid frames: far more than ten leave the connection open.
    for (let round = 0; round < 3; round++) {
      for (const frame of requests) {
        expect(await client.request(frame)).toMatchObject({ type: "error", code: "not_in_room", temporary: false });
      }
    }
    await expectStillServing(client);
  });

  test("too_many_rooms past MAX_ROOMS_PER_CONNECTION; leaving makes room again", async () => {
    const client = await srv.connect();
    await client.request({ type: "join", room: "val-r1" });
    await client.request({ type: "join", room: "val-r2" });
    expect(await client.request({ type: "join", room: "val-r3" })).toMatchObject({
      type: "error",
      code: "too_many_rooms",
      temporary: false,
    });
    // Joining a room already joined is not a new room.
    expect(await client.request({ type: "join", room: "val-r2" })).toMatchObject({ ok: true, for: "join" });
    await client.request({ type: "leave", room: "val-r1" });
    expect(await client.request({ type: "join", room: "val-r3" })).toMatchObject({ ok: true, for: "join" });
  });
});

describe("closing", () => {
  test("ten invalid frames keep the connection; the eleventh gets its error and then 1003", async () => {
    const client = await srv.connect();
    for (let i = 0; i < 10; i++) {
      client.send("not json");
      await client.next("error");
    }
    await expectStillServing(client);
    client.send({ type: "nope", ref: "eleventh" });
    expect(await client.next("error")).toMatchObject({ code: "unknown_type", ref: "eleventh" });
    expect((await client.closed).code).toBe(1003);
  });

  test("binary frames count as invalid frames", async () => {
    const client = await srv.connect();
    for (let i = 0; i < 11; i++) client.ws.send(new Uint8Array([i]));
    expect((await client.closed).code).toBe(1003);
    expect(client.all("error").length).toBe(11);
  });

  test("a frame over MAX_MESSAGE_BYTES closes with 1009 and no answer", async () => {
    const client = await srv.connect(connId(), "user=big");
    await client.request({ type: "join", room: "val-big" });
    client.send({ type: "message", room: "val-big", text: "x".repeat(1100), clientMsgId: "big" });
    expect((await client.closed).code).toBe(1009);
    expect(client.all("error")).toEqual([]);
    expect(client.all("message_response")).toEqual([]);
  });

  test("a frame of exactly MAX_MESSAGE_BYTES is read", async () => {
    const client = await srv.connect();
    const base = JSON.stringify({ type: "ping", ref: "" });
    const frame = JSON.stringify({ type: "ping", ref: "" }).replace(
      '"ref":""',
      `"ref":""${" ".repeat(1024 - base.length)}`,
    );
    expect(Buffer.byteLength(frame)).toBe(1024);
    client.send(frame);
    expect(await client.next("pong")).toMatchObject({ ref: "" });
  });

  test("binary frames over MAX_MESSAGE_BYTES close with 1009 too", async () => {
    const client = await srv.connect();
    client.ws.send(new Uint8Array(2000));
    expect((await client.closed).code).toBe(1009);
  });
});

describe("a backend failure", () => {
  let failing: TestServer;
  beforeAll(async () => {
    // A double of the history store whose writes fail, as a lost Redis connection would make them.
    failing = await startTestServer({}, (config, metrics) => {
      const backends = memoryBackends(config, { metrics });
      backends.history.append = () => Promise.reject(new Error("history store unreachable"));
      // A store reached over the network has no synchronous append.
      backends.history.appendNow = undefined;
      return backends;
    });
  });
  afterAll(() => failing.stop());

  test("answers unavailable, marked temporary, and the connection keeps working", async () => {
    const client = await failing.connect();
    await client.request({ type: "join", room: "val-down" });
    const answer = await client.request({ type: "message", room: "val-down", text: "hi", clientMsgId: "down-1" });
    expect(answer).toMatchObject({ type: "error", code: "unavailable", temporary: true });
    await expectStillServing(client);
  });
});
