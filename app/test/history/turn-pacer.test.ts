import { expect, test } from "bun:test";
import { TurnPacer } from "../../src/history/turn-pacer";

test("work within the budget goes on in this turn; the rest follows in later turns, in the order it asked", async () => {
  const pacer = new TurnPacer(100);
  const order: string[] = [];
  const ask = async (name: string, units: number) => {
    await pacer.admit(units);
    order.push(name);
  };
  const all = [ask("a", 60), ask("b", 40), ask("c", 30), ask("d", 80), ask("e", 500), ask("f", 1)];
  await Promise.resolve();
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
  expect(pacer.admit(10)).toBeUndefined();
  expect(pacer.admit(10)).toBeUndefined();
  expect(pacer.admit(200)).toBeInstanceOf(Promise);
});
