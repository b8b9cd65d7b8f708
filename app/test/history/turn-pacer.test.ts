import { expect, test } from "bun:test";
import { TurnPacer } from "../../src/history/turn-pacer";

test("work within the budget goes on in this turn; the rest follows in later turns, in the order it asked", async () => {
  const pacer = new TurnPacer(100);
  const order: string[] = [];
  const all = (
    [
      ["a", 60],
      ["b", 40],
      ["c", 30],
      ["d", 80],
      ["e", 500],
      ["f", 1],
    ] as const
  ).map(
    ([name, units]) =>
      new Promise<void>((resolve) =>
        pacer.admit(units, () => {
          order.push(name);
          resolve();
        }),
      ),
  );
  // a and b fit the first turn's budget; c waits although it would fit after b's release.
  expect(order).toEqual(["a", "b"]);
  await Bun.sleep(5);
  expect(order.slice(0, 3)).toEqual(["a", "b", "c"]);
  await Promise.all(all);
  // Order kept throughout; a single item above the budget still goes, alone, in a turn of its own.
  expect(order).toEqual(["a", "b", "c", "d", "e", "f"]);
});

test("nothing waiting: a later admit within the budget is not delayed", async () => {
  const pacer = new TurnPacer(100);
  let ran = 0;
  expect(pacer.admit(10, () => ran++)).toBe(true);
  expect(pacer.admit(10, () => ran++)).toBe(true);
  expect(ran).toBe(2);
  expect(pacer.admit(200, () => ran++)).toBe(false);
  expect(ran).toBe(2);
  await Bun.sleep(5);
  expect(ran).toBe(3);
});
