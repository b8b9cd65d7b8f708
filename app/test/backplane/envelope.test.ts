import { describe, expect, test } from "bun:test";
import { decodeEnvelope, encodeEnvelope } from "../../src/backplane/envelope";
import { frames } from "../../src/protocol/server-frames";

const message = {
  room: "lobby",
  id: "m-1",
  offset: 7,
  from: "ann",
  text: "a|b\nc",
  ts: 1700000000000,
  clientMsgId: "c-1",
};

describe("backplane envelope", () => {
  test("v1 as the previous release publishes it: a frame, or a stored message its receiver builds a frame of", () => {
    // Byte for byte what the previous release's backplane and append script publish.
    const frame = frames.typing("lobby", "ann", true);
    const v1Frame = JSON.stringify({ origin: "old", topic: "room:lobby", frame, sentAt: 5 });
    expect(decodeEnvelope(v1Frame)).toEqual({
      origin: "old",
      stored: false,
      sentAt: 5,
      epoch: undefined,
      offset: undefined,
      frames: [frame],
      message: undefined,
    });
    const stored = `{"offset":7,${JSON.stringify({ ...message, offset: undefined }).slice(1)}`;
    const v1Stored = `{"origin":"old","topic":"room:lobby","epoch":"e1","offset":7,"sentAt":5,"message":${stored}}`;
    expect(decodeEnvelope(v1Stored)).toMatchObject({ origin: "old", stored: true, epoch: "e1", offset: 7, message });
    expect(encodeEnvelope(1, { origin: "old", topic: "room:lobby", frame, sentAt: 5 })).toBe(v1Frame);
  });

  test("v2 carries a header line and the frames unchanged, one per line", () => {
    const frame = frames.message(message);
    const encoded = encodeEnvelope(2, {
      origin: "i-1",
      topic: "room:lobby",
      frame,
      sentAt: 12,
      epoch: "e1",
      offset: 7,
    });
    expect(encoded).toBe(`2||12|e1|7|i-1\n${frame}`);
    expect(decodeEnvelope(encoded)).toEqual({
      origin: "i-1",
      stored: false,
      sentAt: 12,
      epoch: "e1",
      offset: 7,
      frames: [frame],
    });
    const plain = encodeEnvelope(2, { origin: "i-1", topic: "room:lobby", frame: '{"type":"typing"}', sentAt: 3 });
    expect(decodeEnvelope(plain)).toMatchObject({ epoch: undefined, offset: undefined, frames: ['{"type":"typing"}'] });
  });

  test("a v2 batch of stored messages: consecutive offsets from the header's, frames as sent", () => {
    const batch = [7, 8, 9].map((offset) => frames.message({ ...message, offset }));
    const decoded = decodeEnvelope(`2|s|12|e1|7|i-1\n${batch.join("\n")}`);
    expect(decoded).toMatchObject({ origin: "i-1", stored: true, epoch: "e1", offset: 7, frames: batch });
    for (const [k, frame] of decoded!.frames!.entries()) expect(JSON.parse(frame).offset).toBe(7 + k);
  });

  test("anything else is refused rather than guessed at", () => {
    for (const payload of [
      "",
      "not json",
      "{broken",
      '{"frame":"x"}',
      '{"origin":"a","sentAt":1}',
      "3|s|1|e|1|i\n{}",
      "2|s|1|e|1|i",
      "2|s|soon|e|1|i\n{}",
      "2|s|1|e|one|i\n{}",
      "2|s|1\n|e|1|i{}",
    ])
      expect(decodeEnvelope(payload)).toBeUndefined();
  });
});
