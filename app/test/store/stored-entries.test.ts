import { describe, expect, test } from "bun:test";
import { offsetOf, storedBatchJson, tsOf } from "../../src/store/stored-entries";

// Entries as the append scripts store them: `{"offset":<n>,` then the message's JSON without its brace.
const stored = (offset: number, message: Record<string, unknown>) =>
  `{"offset":${offset},${JSON.stringify(message).slice(1)}`;

describe("log entries forwarded as stored", () => {
  const texts = ['"ts":1 and "offset":2,', '{"ts": 5}', "a \\ backslash \\ud800 written out", "ligne\nsuivante 😀"];

  test("offset and ts are read from the entry whatever its text holds", () => {
    texts.forEach((text, i) => {
      const entry = stored(40 + i, { id: `m${i}`, from: "u", text, ts: 1_700_000_000_123 + i, clientMsgId: "c" });
      expect(offsetOf(entry)).toBe(40 + i);
      expect(tsOf(entry)).toBe(1_700_000_000_123 + i);
    });
  });

  test("the batch is one JSON document holding every entry as it was; a lone surrogate becomes U+FFFD", () => {
    const entries = [...texts, "lone \ud800 surrogate"].map((text, i) =>
      stored(i + 1, { id: `m${i}`, from: "ü", text, ts: 1000 + i, clientMsgId: `c${i}` }),
    );
    const json = storedBatchJson([
      { owner: "r'; --", epoch: "e", entries },
      { owner: "empty", epoch: "e", entries: [] },
    ]);
    expect(json.includes("\\ud800 surrogate")).toBe(false);
    const groups = JSON.parse(json) as { o: string; e: string; m: { offset: number; text: string }[] }[];
    expect(groups.map((g) => [g.o, g.e])).toEqual([["r'; --", "e"]]);
    expect(groups[0]!.m.map((m) => m.text)).toEqual([...texts, "lone \ufffd surrogate"]);
    expect(groups[0]!.m.map((m) => m.offset)).toEqual([1, 2, 3, 4, 5]);
  });
});
