import { expect, test } from "bun:test";
import { RoomSequencer } from "../../src/chat/sequencer";
import { MemoryHistoryStore } from "../../src/history/memory";
import { frames, type RoomMessage } from "../../src/protocol/server-frames";

async function storedRoom(n: number, historySize = 100) {
  const history = new MemoryHistoryStore({ historySize, ttlSeconds: 600, dedupWindowSeconds: 300 });
  const stored: { message: RoomMessage; epoch: string }[] = [];
  for (let i = 1; i <= n; i++) {
    const result = await history.append({
      room: "r",
      id: `id${i}`,
      from: "u",
      text: `t${i}`,
      ts: i,
      clientMsgId: `c${i}`,
    });
    if (result.status !== "stored") throw new Error(`message ${i} was not stored: ${result.status}`);
    stored.push(result);
  }
  const delivered: number[] = [];
  const gaps: number[] = [];
  const seq = new RoomSequencer(
    history,
    (_room, frame) => delivered.push(JSON.parse(frame).offset),
    (n) => gaps.push(n),
  );
  const epoch = stored[0]!.epoch;
  const offer = (offset: number) => seq.offer("r", epoch, offset, frames.message(stored[offset - 1]!.message));
  const settle = async () => {
    for (let i = 0; i < 10; i++) await Bun.sleep(0);
  };
  return { seq, epoch, offer, delivered, gaps, settle };
}

test("arrivals out of order with holes between them are delivered once each, in offset order", async () => {
  const room = await storedRoom(6);
  room.seq.track("r", room.epoch, 0);
  room.offer(2);
  room.offer(5);
  room.offer(3);
  await room.settle();
  room.offer(4);
  room.offer(6);
  room.offer(1);
  await room.settle();
  expect(room.delivered).toEqual([1, 2, 3, 4, 5, 6]);
  // 1, 4 and 6 came from history: 6 was stored before the read, so it was sent before its own arrival.
  expect(room.gaps.reduce((a, b) => a + b, 0)).toBe(3);
});

test("duplicates are dropped; a gap trimmed out of history is skipped instead of stalling the room", async () => {
  const room = await storedRoom(10, 3);
  room.seq.track("r", room.epoch, 2);
  room.offer(3);
  room.offer(3);
  room.offer(9);
  await room.settle();
  room.offer(10);
  await room.settle();
  expect(room.delivered).toEqual([3, 8, 9, 10]);
});
