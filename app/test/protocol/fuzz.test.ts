// Over a thousand generated malformed frames, sent over several connections at once, while a
// well-behaved pair of clients on the same instance keeps chatting. Every malformed frame gets
// exactly its one answer (or the close it calls for), and the chat loses nothing.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Frame, TestClient } from "../helpers/client";
import { sample, scrape } from "../helpers/metrics";
import { connId, startTestServer, type TestServer } from "../helpers/server";
import { waitFor } from "../helpers/wait";

const MAX_TEXT = 50;
const MAX_BYTES = 2048;
const WORKERS = 4;
const FRAMES_PER_WORKER = 300;

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer({ MAX_TEXT_LENGTH: String(MAX_TEXT), MAX_MESSAGE_BYTES: String(MAX_BYTES) });
});
afterAll(() => srv.stop());

/** Small deterministic generator (mulberry32), so a failure can be replayed from its seed. */
function random(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const text = (n: number) => Array.from({ length: n }, () => String.fromCharCode(32 + int(95))).join("");
  return { next, int, pick, text };
}
type Rng = ReturnType<typeof random>;

/** What the server must do with a frame: answer an error with this code, answer ok, or close. */
type Expect = { error: string; invalid: boolean } | { answer: string } | { close: 1009 };
interface Case {
  frame: string | Uint8Array;
  expect: Expect;
  ref?: string;
}

const invalid = (code: string) => ({ error: code, invalid: true });
const TYPES = ["join", "leave", "message", "direct", "typing", "read", "history", "presence", "ping"] as const;

/** A valid frame of each type, aimed at a room the fuzzing connection never joined. */
function validFrame(rng: Rng, type: (typeof TYPES)[number]): Record<string, unknown> {
  const room = `fuzz-${rng.int(5)}`;
  switch (type) {
    case "join":
      return { type, room };
    case "leave":
      return { type, room };
    case "message":
      return { type, room, text: "hi", clientMsgId: `c${rng.int(1e9)}` };
    case "direct":
      return { type, to: "nobody", text: "hi", clientMsgId: `c${rng.int(1e9)}` };
    case "typing":
      return { type, room, active: true };
    case "read":
      return { type, room, offset: 1 };
    case "history":
      return { type, room, limit: 10 };
    case "presence":
      return { type, room };
    case "ping":
      return { type };
  }
}

/** Values that no field of protocol v1 accepts in place of a string, boolean or integer. */
const WRONG: Record<string, unknown[]> = {
  string: [1, 1e308, -0.5, true, null, [], ["x"], {}, { a: "b" }],
  room: ["", " ", "x".repeat(65), "bad room", "rööm", "a/b", "\u0000", 7, null],
  boolean: [0, 1, "true", "false", null, [], {}],
  offset: [-1, 1.5, "1", "x", true, null, [], {}, -1e308],
};
const FIELD_KIND: Record<string, string> = {
  room: "room",
  text: "string",
  clientMsgId: "string",
  to: "string",
  active: "boolean",
  offset: "offset",
  limit: "offset",
  epoch: "string",
};

function nested(depth: number): unknown {
  let value: unknown = "deep";
  for (let i = 0; i < depth; i++) value = { n: value };
  return value;
}

/** Adds a key to a JSON object's text, so that `__proto__` really arrives as an own key. */
function withKey(frame: Record<string, unknown>, key: string, value: unknown) {
  return `${JSON.stringify(frame).slice(0, -1)},${JSON.stringify(key)}:${JSON.stringify(value)}}`;
}

function generate(rng: Rng): Case {
  const ref = `f${rng.int(1e9)}`;
  switch (rng.int(12)) {
    case 0: {
      // Text that is not JSON, and does not look like a number either.
      const base = JSON.stringify({ ...validFrame(rng, rng.pick(TYPES)), ref });
      const broken = rng.pick([
        base.slice(0, 1 + rng.int(base.length - 1)),
        base.replace(/"/g, "'"),
        base.replace(":", ""),
        `${base},`,
        `{${rng.text(rng.int(40))}`,
        rng.pick(["nul", "tru", "undefined", "NaN-ish", "{}}", "[[", "", "\u0000", '{"a":}']),
      ]);
      return { frame: broken, expect: invalid("invalid_json") };
    }
    case 1: {
      const values = [
        "1e400",
        "-1e400",
        "123456789012345678901234567890",
        "0",
        "-0",
        "[]",
        "[1,[2,[3]]]",
        "null",
        "true",
        "false",
        JSON.stringify([validFrame(rng, "ping")]),
      ];
      return { frame: rng.pick(values), expect: invalid("invalid_frame") };
    }
    case 2: {
      const frame = withKey({ ref }, "type", rng.pick([1, null, true, [], ["ping"], {}, { type: "ping" }, 1e308]));
      return { frame, ref, expect: invalid("invalid_frame") };
    }
    case 3: {
      const type = rng.pick([
        "__proto__",
        "constructor",
        "prototype",
        "toString",
        "valueOf",
        "hasOwnProperty",
        "PING",
        "join ",
        "",
        rng.text(1 + rng.int(20)),
      ]);
      return { frame: JSON.stringify({ type, ref }), ref, expect: invalid("unknown_type") };
    }
    case 4: {
      // A known type with one field of the wrong kind.
      const type = rng.pick(TYPES.filter((t) => t !== "ping" && t !== "history"));
      const frame: Record<string, unknown> = { ...validFrame(rng, type), ref };
      const fields = Object.keys(frame).filter((k) => k in FIELD_KIND);
      const field = rng.pick(fields);
      frame[field] = rng.pick(WRONG[FIELD_KIND[field]!]!);
      return { frame: JSON.stringify(frame), ref, expect: invalid("invalid_frame") };
    }
    case 5: {
      // A known type with a required field missing.
      const type = rng.pick(TYPES.filter((t) => t !== "ping"));
      const frame: Record<string, unknown> = { ...validFrame(rng, type), ref };
      const required = Object.keys(frame).filter((k) => k !== "type" && k !== "ref" && k !== "limit");
      delete frame[rng.pick(required)];
      return { frame: JSON.stringify(frame), ref, expect: invalid("invalid_frame") };
    }
    case 6: {
      // An extra key: prototype names, deep nesting, huge numbers.
      const frame = { ...validFrame(rng, rng.pick(TYPES)), ref };
      const key = rng.pick(["__proto__", "constructor", "prototype", "extra", "isAdmin"]);
      const value = rng.pick([nested(1 + rng.int(200)), { polluted: "yes" }, 1e308, -1e308, [1, 2, 3], null]);
      return { frame: withKey(frame, key, value), ref, expect: invalid("invalid_frame") };
    }
    case 7: {
      const frame = { ...validFrame(rng, "history"), ref, limit: rng.pick([0, 101, 1e308, -1, 2.5]) };
      return { frame: JSON.stringify(frame), ref, expect: invalid("invalid_frame") };
    }
    case 8: {
      const type = rng.pick(["message", "direct"] as const);
      const frame = { ...validFrame(rng, type), ref, text: rng.text(MAX_TEXT + 1 + rng.int(MAX_TEXT * 10)) };
      return { frame: JSON.stringify(frame), ref, expect: invalid("text_too_long") };
    }
    case 9: {
      const bytes = new Uint8Array(rng.int(200));
      for (let i = 0; i < bytes.length; i++) bytes[i] = rng.int(256);
      const frame = rng.next() < 0.3 ? new TextEncoder().encode(JSON.stringify({ type: "ping", ref })) : bytes;
      return { frame, expect: invalid("binary_not_supported") };
    }
    case 10: {
      if (rng.next() < 0.2) {
        const frame =
          rng.next() < 0.5
            ? "x".repeat(MAX_BYTES + 1 + rng.int(MAX_BYTES))
            : new Uint8Array(MAX_BYTES + 1 + rng.int(MAX_BYTES));
        return { frame, expect: { close: 1009 } };
      }
      // Well-formed requests for a room the connection is not in: refused, but not invalid.
      const type = rng.pick(["leave", "message", "typing", "read", "history", "presence"] as const);
      return {
        frame: JSON.stringify({ ...validFrame(rng, type), ref }),
        ref,
        expect: { error: "not_in_room", invalid: false },
      };
    }
    default: {
      // Valid frames with odd but allowed values get their normal answer.
      const frame = rng.pick([
        { type: "ping", ref },
        {
          type: "direct",
          ref,
          to: rng.text(1 + rng.int(64)),
          text: "😀".repeat(1 + rng.int(MAX_TEXT)),
          clientMsgId: `c${rng.int(1e9)}`,
        },
      ]);
      return {
        frame: JSON.stringify(frame),
        ref,
        expect: { answer: frame.type === "ping" ? "pong" : "message_response" },
      };
    }
  }
}

const ANSWERS = new Set(["error", "pong", "message_response", "history", "presence"]);
const isAnswer = (f: Frame) => ANSWERS.has(f.type);

interface Tally {
  frames: number;
  errors: Record<string, number>;
  closes: Record<number, number>;
}

/** One fuzzing connection after another: each lives until it earns a 1003 or a 1009. */
async function fuzzWorker(seed: number, tally: Tally) {
  const rng = random(seed);
  let client: TestClient | undefined;
  let invalidCount = 0;
  const closeWith = async (code: number) => {
    expect((await client!.closed).code).toBe(code);
    // Exactly one answer per frame: nothing is left over once the socket is closed.
    expect(client!.frames.filter(isAnswer)).toEqual([]);
    tally.closes[code] = (tally.closes[code] ?? 0) + 1;
    client = undefined;
    invalidCount = 0;
  };
  for (let i = 0; i < FRAMES_PER_WORKER; i++) {
    client ??= await srv.connect(connId("fuzz"), `user=fuzzer-${seed}`);
    const c = generate(rng);
    client.ws.send(c.frame);
    tally.frames++;
    const context = `seed ${seed}, frame ${i}: ${typeof c.frame === "string" ? c.frame.slice(0, 200) : `binary(${c.frame.length})`}`;
    if ("close" in c.expect) {
      await closeWith(c.expect.close);
      continue;
    }
    const answer = await client.next(isAnswer);
    if ("answer" in c.expect) {
      expect(answer.type, context).toBe(c.expect.answer);
    } else {
      expect(answer, context).toMatchObject({ type: "error", code: c.expect.error, temporary: false });
      tally.errors[answer.code] = (tally.errors[answer.code] ?? 0) + 1;
      if (c.expect.invalid && ++invalidCount > 10) {
        await closeWith(1003);
        continue;
      }
    }
    if (c.ref !== undefined) expect(answer.ref, context).toBe(c.ref);
  }
  if (client) {
    await client.sync();
    await client.close();
    expect(client.frames.filter(isAnswer)).toEqual([]);
  }
}

test(`${WORKERS * FRAMES_PER_WORKER} malformed frames over many connections leave a concurrent chat intact`, async () => {
  const before = await scrape(srv.httpUrl);
  const alice = await srv.connect(connId("calm"), "user=alice");
  const bob = await srv.connect(connId("calm"), "user=bob");
  await alice.request({ type: "join", room: "calm" });
  await bob.request({ type: "join", room: "calm" });

  let fuzzing = true;
  const chat = (async () => {
    const sent: string[] = [];
    while (fuzzing || sent.length < 50) {
      const text = `calm message ${sent.length + 1}`;
      const answer = await alice.request({
        type: "message",
        room: "calm",
        text,
        clientMsgId: `calm-${sent.length + 1}`,
      });
      expect(answer).toMatchObject({ type: "message_response", ok: true, offset: sent.length + 1 });
      sent.push(text);
    }
    return sent;
  })();

  const tally: Tally = { frames: 0, errors: {}, closes: {} };
  const seed = Date.now() % 100_000;
  try {
    await Promise.all(Array.from({ length: WORKERS }, (_, w) => fuzzWorker(seed + w, tally)));
  } finally {
    fuzzing = false;
  }
  const sent = await chat;

  // Bob saw every message of the chat, once each, in order.
  const received: Frame[] = [];
  for (let i = 0; i < sent.length; i++) received.push(await bob.next("message"));
  expect(received.map((m) => m.text)).toEqual(sent);
  expect(received.map((m) => m.offset)).toEqual(sent.map((_, i) => i + 1));
  await bob.sync();
  expect(bob.all("message")).toEqual([]);

  expect(tally.frames).toBeGreaterThanOrEqual(1000);
  console.log(
    `fuzz seed ${seed}: ${tally.frames} frames, errors ${JSON.stringify(tally.errors)}, closes ${JSON.stringify(tally.closes)}, chat ${sent.length} messages`,
  );
  expect(tally.closes[1003]).toBeGreaterThan(0);
  expect(tally.closes[1009]).toBeGreaterThan(0);
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();

  // The counters tell the same story as the clients, once the server has seen every close.
  await waitFor(() => srv.server.registry.size === 2, { what: "fuzzing connections released" });
  const after = await scrape(srv.httpUrl);
  for (const [code, n] of Object.entries(tally.errors)) {
    const delta =
      sample(after, "websocket_errors_total", { code }) - sample(before, "websocket_errors_total", { code });
    expect(delta, code).toBe(n);
  }
  for (const [code, n] of Object.entries(tally.closes)) {
    const delta =
      sample(after, "websocket_disconnects_total", { code }) - sample(before, "websocket_disconnects_total", { code });
    expect(delta, `close ${code}`).toBe(n);
  }
  const health = await (await fetch(`${srv.httpUrl}/health`)).json();
  expect(health).toMatchObject({ status: "ok", connections: 2 });
}, 60_000);
