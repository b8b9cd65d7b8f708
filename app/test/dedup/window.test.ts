// The in-memory dedup window behind the memory history (and the SQLite server's hot history). The
// history contract checks what a sender sees (a repeat answered, forgotten after the window); this
// checks the window's edges and that an entry survives the move between its two maps, on a clock
// the test turns.
import { expect, test } from "bun:test";
import { DedupWindow, pairKey } from "../../src/dedup/window";

function clock(start = 1_000_000) {
  let now = start;
  return {
    now: () => now,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

test("a record is found until its window ends, then never again", () => {
  const t = clock();
  const window = new DedupWindow<string>(5, t.now);
  window.record("alice", "m-1", "first answer");
  expect(window.lookupKey(pairKey("alice", "m-1"))?.answer).toBe("first answer");
  t.advance(4_999);
  expect(window.lookupKey(pairKey("alice", "m-1"))?.answer).toBe("first answer");
  t.advance(1);
  expect(window.lookupKey(pairKey("alice", "m-1"))).toBeUndefined();
});

test("pairs are per user and per clientMsgId", () => {
  const window = new DedupWindow<number>(60, clock().now);
  window.recordKey(pairKey("alice", "m-1"), 1);
  expect(window.lookupKey(pairKey("bob", "m-1"))).toBeUndefined();
  expect(window.lookupKey(pairKey("alice", "m-2"))).toBeUndefined();
  // The separator cannot be forged by a user id ending where a clientMsgId begins.
  expect(window.lookupKey(pairKey("alic", "em-1"))).toBeUndefined();
  expect(window.lookupKey(pairKey("alice", "m-1"))?.answer).toBe(1);
});

test("records of different ages each keep their own window across the moves between its maps", () => {
  const t = clock();
  const window = new DedupWindow<number>(3, t.now);
  // One record per 700 ms: each crosses several settle passes (at most one per second) in its life.
  for (let i = 0; i < 10; i++) {
    window.record("u", `m-${i}`, i);
    t.advance(700);
  }
  // Now 7,000 ms after the first record: those older than 3,000 ms are gone, the others are found.
  const live = Array.from({ length: 10 }, (_, i) => window.lookupKey(pairKey("u", `m-${i}`))?.answer);
  expect(live).toEqual([undefined, undefined, undefined, undefined, undefined, undefined, 6, 7, 8, 9]);
  t.advance(3_000);
  expect(Array.from({ length: 10 }, (_, i) => window.lookupKey(pairKey("u", `m-${i}`)))).toEqual(
    Array.from({ length: 10 }, () => undefined),
  );
});

test("clear forgets every record", () => {
  const t = clock();
  const window = new DedupWindow<number>(60, t.now);
  window.record("u", "a", 1);
  t.advance(2_000);
  window.lookupKey(pairKey("u", "a"));
  window.record("u", "b", 2);
  window.clear();
  expect(window.lookupKey(pairKey("u", "a"))).toBeUndefined();
  expect(window.lookupKey(pairKey("u", "b"))).toBeUndefined();
});
