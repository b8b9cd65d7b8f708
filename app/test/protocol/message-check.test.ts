// The `message` frame is checked by hand before its compiled schema (the hot path): the two must
// agree on every frame, valid or not, and a refused frame still gets the schema's error message.
import { expect, test } from "bun:test";
import { Value } from "@sinclair/typebox/value";
import { ClientFrameSchemas, validateClientFrame } from "../../src/protocol/client-frames";

const MAX_TEXT = 1000;
const schema = ClientFrameSchemas.message;

const fieldValues: Record<string, unknown[]> = {
  ref: [undefined, "", "r-1", "x".repeat(64), "x".repeat(65), 7, null],
  room: ["lobby", "a:b.c-d_e", "", "has space", "é", "x".repeat(64), "x".repeat(65), 3, null, ["lobby"]],
  text: ["hi", "", " ", "😀", 1, null, {}],
  clientMsgId: ["c-1", "", "x".repeat(64), "x".repeat(65), 5, null],
};

function* frames(): Generator<Record<string, unknown>> {
  for (const ref of fieldValues.ref!)
    for (const room of fieldValues.room!)
      for (const text of fieldValues.text!)
        for (const clientMsgId of fieldValues.clientMsgId!) {
          const frame: Record<string, unknown> = { type: "message", room, text, clientMsgId };
          if (ref !== undefined) frame.ref = ref;
          yield frame;
        }
  const ok = { type: "message", room: "lobby", text: "hi", clientMsgId: "c" };
  yield { ...ok, extra: 1 };
  yield JSON.parse('{"type":"message","room":"lobby","text":"hi","clientMsgId":"c","__proto__":{}}');
  for (const missing of ["room", "text", "clientMsgId"]) {
    const frame: Record<string, unknown> = { ...ok };
    delete frame[missing];
    yield frame;
  }
}

test("the hand-written check of `message` accepts exactly what the schema accepts", () => {
  let checked = 0;
  for (const frame of frames()) {
    const result = validateClientFrame(frame, MAX_TEXT);
    expect({ frame, ok: result.ok }).toEqual({ frame, ok: Value.Check(schema, frame) });
    if (!result.ok) expect(result.message.startsWith("message: ")).toBe(true);
    checked++;
  }
  expect(checked).toBeGreaterThan(2000);
});
