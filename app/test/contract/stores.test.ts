import { describe, expect, test } from "bun:test";
import type { Envelope } from "../../src/backplane/backplane";
import type { AppendResult } from "../../src/history/history";
import { RedisHistoryStore } from "../../src/history/redis";
import { redisKeys } from "../../src/redis/keys";
import { keySlot } from "../../src/redis/slots";
import { roomTopic, userTopic } from "../../src/rooms/topics";
import { sessionKey } from "../../src/sessions/sessions";
import { clusterClient, factories, historyFactories, redisHistoryWithKeys, redisLayouts, useRedis } from "./backends";

useRedis();

const draft = (room: string, n: number, from = "u") => ({
  room,
  id: `id-${n}`,
  from,
  text: `text ${n}`,
  ts: 1000 + n,
  clientMsgId: `c-${n}`,
});

function stored(result: AppendResult) {
  if (result.status !== "stored") throw new Error(`expected the message to be stored, got ${JSON.stringify(result)}`);
  return result;
}

describe.each(historyFactories)("history contract ($name)", (f) => {
  test("offsets start at 1 and are dense; head reports the newest", async () => {
    const h = f.history({ historySize: 10, ttlSeconds: 600 });
    const empty = await h.head("r");
    expect(empty.offset).toBe(0);
    const results = [];
    for (let i = 1; i <= 3; i++) results.push(stored(await h.append(draft("r", i))));
    expect(results.map((r) => r.message.offset)).toEqual([1, 2, 3]);
    expect(new Set(results.map((r) => r.epoch))).toEqual(new Set([empty.epoch]));
    expect(await h.head("r")).toEqual({ epoch: empty.epoch, offset: 3, start: 0 });
  });

  test("since replays what came after an offset, complete only while every message is still stored", async () => {
    const h = f.history({ historySize: 3, ttlSeconds: 600 });
    for (let i = 1; i <= 5; i++) await h.append(draft("s", i));
    const { epoch } = await h.head("s");
    const recent = await h.since("s", 2, epoch);
    expect(recent.complete).toBe(true);
    expect(recent.messages.map((m) => [m.offset, m.text])).toEqual([
      [3, "text 3"],
      [4, "text 4"],
      [5, "text 5"],
    ]);
    // Message 2 is gone from a store keeping the last 3; a database behind it still has it.
    const older = await h.since("s", 1, epoch);
    expect(older.complete).toBe(f.keepsEverything === true);
    if (f.keepsEverything) expect(older.messages.map((m) => m.offset)).toEqual([2, 3, 4, 5]);
    expect(await h.since("s", 5, epoch)).toEqual({ epoch, messages: [], complete: true });
    expect((await h.since("s", 3, "another-epoch")).complete).toBe(false);
    expect((await h.since("s", 9, epoch)).complete).toBe(false);
  });

  test("a sender's clientMsgId is stored once in the window; a repeat gets the first receipt", async () => {
    const h = f.history({ historySize: 10, ttlSeconds: 600 });
    const first = stored(await h.append(draft("d", 1)));
    const repeat = await h.append({ ...draft("d", 1), id: "another-id", text: "changed", ts: 5 });
    expect(repeat).toEqual({ status: "duplicate", receipt: { room: "d", id: "id-1", offset: 1, ts: 1001 } });
    // Another sender may use the same clientMsgId; the sender's next id is a new message.
    expect(stored(await h.append(draft("d", 1, "someone-else"))).message.offset).toBe(2);
    expect(stored(await h.append(draft("d", 2))).message.offset).toBe(3);
    const { messages } = await h.since("d", 0, first.epoch);
    expect(messages.map((m) => [m.offset, m.from, m.text])).toEqual([
      [1, "u", "text 1"],
      [2, "someone-else", "text 1"],
      [3, "u", "text 2"],
    ]);
  });

  test("a message sent twice in one turn is stored once; the repeat gets the first receipt", async () => {
    const h = f.history({ historySize: 10, ttlSeconds: 600 });
    // One batch: the repeat is answered from what the same script call stored, not from a read before it.
    const [first, repeat, next] = await Promise.all([
      h.append(draft("twice", 1)),
      h.append({ ...draft("twice", 1), id: "another-id" }),
      h.append(draft("twice", 2)),
    ]);
    expect(stored(first!).message.offset).toBe(1);
    expect(repeat).toEqual({ status: "duplicate", receipt: { room: "twice", id: "id-1", offset: 1, ts: 1001 } });
    expect(stored(next!).message.offset).toBe(2);
  });

  test("of concurrent appends of one message on two instances exactly one is stored", async () => {
    const [a, b] = f.historyPair({ historySize: 10, ttlSeconds: 600 });
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => (i % 2 ? a : b).append({ ...draft("c", 1), id: `try-${i}` })),
    );
    const winners = results.filter((r) => r.status === "stored");
    expect(winners).toHaveLength(1);
    const id = stored(winners[0]!).message.id;
    for (const r of results)
      if (r.status !== "stored")
        expect(r).toEqual({ status: "duplicate", receipt: { room: "c", id, offset: 1, ts: 1001 } });
    expect((await a.head("c")).offset).toBe(1);
  });

  test("appends made at once to several rooms are stored in call order, offsets dense per room", async () => {
    const h = f.history({ historySize: 100, ttlSeconds: 600 });
    // More than one script call's worth (64), interleaved over three rooms.
    const sends = Array.from({ length: 150 }, (_, i) => ({ room: `m${i % 3}`, n: Math.floor(i / 3) + 1 }));
    const results = await Promise.all(
      sends.map(({ room, n }) => h.append({ ...draft(room, n), clientMsgId: `${room}-${n}` })),
    );
    expect(results.map((r) => stored(r).message.offset)).toEqual(sends.map(({ n }) => n));
    for (const room of ["m0", "m1", "m2"]) {
      const head = await h.head(room);
      expect(head.offset).toBe(50);
      const { messages } = await h.since(room, 0, head.epoch);
      expect(messages.map((m) => m.text)).toEqual(Array.from({ length: 50 }, (_, i) => `text ${i + 1}`));
    }
  });

  test("a clientMsgId is forgotten after the dedup window", async () => {
    const h = f.history({ historySize: 10, ttlSeconds: 600, dedupWindowSeconds: 1 });
    stored(await h.append(draft("w", 1)));
    expect((await h.append(draft("w", 1))).status).toBe("duplicate");
    await Bun.sleep(1100);
    expect(stored(await h.append(draft("w", 1))).message.offset).toBe(2);
  });

  test.if(f.name === "memory")(
    "the synchronous append is the same step as append: one offset sequence, one dedup",
    async () => {
      const h = f.history({ historySize: 10, ttlSeconds: 600 });
      const append = h.appendNow!.bind(h);
      const first = stored(append(draft("n", 1)));
      expect(stored(await h.append(draft("n", 2))).message.offset).toBe(2);
      expect(stored(append(draft("n", 3))).message.offset).toBe(3);
      expect(append(draft("n", 2))).toEqual({
        status: "duplicate",
        receipt: { room: "n", id: "id-2", offset: 2, ts: 1002 },
      });
      expect((await h.append(draft("n", 1))).status).toBe("duplicate");
      const { messages } = await h.since("n", 0, first.epoch);
      expect(messages.map((m) => m.offset)).toEqual([1, 2, 3]);
    },
  );

  test("before pages backwards, oldest first, with hasMore", async () => {
    const h = f.history({ historySize: 50, ttlSeconds: 600 });
    for (let i = 1; i <= 7; i++) await h.append(draft("p", i));
    const last = await h.before("p", undefined, 3);
    expect(last.messages.map((m) => m.offset)).toEqual([5, 6, 7]);
    expect(last.hasMore).toBe(true);
    const older = await h.before("p", 5, 10);
    expect(older.messages.map((m) => m.offset)).toEqual([1, 2, 3, 4]);
    expect(older.hasMore).toBe(false);
  });
});

describe.each(redisLayouts)("Redis history (%s)", (layout) => {
  test("both keys of a room written in one batch carry the history TTL", async () => {
    const { history, client, keys } = redisHistoryWithKeys(
      { historySize: 10, ttlSeconds: 600, dedupWindowSeconds: 300 },
      layout,
    );
    // One batch: two rooms, three messages.
    await Promise.all([
      history.append(draft("ttl-a", 1)),
      history.append(draft("ttl-b", 2)),
      history.append(draft("ttl-a", 3)),
    ]);
    for (const room of ["ttl-a", "ttl-b"]) {
      for (const key of [keys.roomMeta(room), keys.roomLog(room)]) {
        const ttl = await client.ttl(key);
        expect(`${key} ${ttl > 590 && ttl <= 600 ? "has the TTL" : `ttl ${ttl}`}`).toBe(`${key} has the TTL`);
      }
    }
    expect(await client.ttl(keys.messageDedup("ttl-a", "u", "c-1"))).toBeGreaterThan(290);
  });

  test("an unreadable dedup value fails that append alone, not the rest of its batch", async () => {
    const { history, client, keys } = redisHistoryWithKeys(
      { historySize: 10, ttlSeconds: 600, dedupWindowSeconds: 300 },
      layout,
    );
    await client.set(keys.messageDedup("mixed", "u", "c-1"), "not json", "EX", 300);
    const [bad, good] = await Promise.allSettled([
      history.append(draft("mixed", 1)),
      history.append(draft("mixed", 2)),
    ]);
    expect(bad.status).toBe("rejected");
    expect(good.status === "fulfilled" && good.value.status === "stored" && good.value.message.offset).toBe(1);
  });

  test("answers pending while a server of an older release holds the message's dedup claim", async () => {
    // Older releases claimed a message with SET NX "" before storing it and wrote the answer after.
    const { history, client, keys } = redisHistoryWithKeys(
      { historySize: 10, ttlSeconds: 600, dedupWindowSeconds: 300 },
      layout,
    );
    await client.set(keys.messageDedup("old", "u", "c-1"), "", "EX", 300);
    expect(await history.append(draft("old", 1))).toEqual({ status: "pending" });
    expect((await history.head("old")).offset).toBe(0);
    await client.set(
      keys.messageDedup("old", "u", "c-1"),
      JSON.stringify({ room: "old", id: "first", offset: 7, ts: 1 }),
      "EX",
      300,
    );
    expect(await history.append(draft("old", 1))).toEqual({
      status: "duplicate",
      receipt: { room: "old", id: "first", offset: 7, ts: 1 },
    });
  });

  test("a stored head below what this instance saw starts a new epoch whose offsets continue above it", async () => {
    const epochResets: { room: string; seen: { epoch: string; offset: number } }[] = [];
    const { history, client, keys } = redisHistoryWithKeys(
      { historySize: 10, ttlSeconds: 600, dedupWindowSeconds: 300 },
      layout,
    );
    const watched = new RedisHistoryStore(client, keys, {
      historySize: 10,
      ttlSeconds: 600,
      dedupWindowSeconds: 300,
      onEpochReset: (room, _epoch, seen) => epochResets.push({ room, seen }),
    });
    let epoch = "";
    for (let i = 1; i <= 5; i++) epoch = stored(await watched.append(draft("back", i))).epoch;
    // Redis comes back with offsets 1-3 of the same epoch (a stale snapshot, a lagging replica).
    await client.hset(keys.roomMeta("back"), "offset", 3);
    await client.xtrim(keys.roomLog("back"), "MAXLEN", 3);
    const next = stored(await watched.append(draft("back", 6)));
    expect(next.epoch).not.toBe(epoch);
    expect(next.message.offset).toBe(6);
    expect(epochResets).toEqual([{ room: "back", seen: { epoch, offset: 5 } }]);
    // Another instance that never saw more than Redis holds takes the new epoch as it is.
    // The new epoch says where it started: after the newest offset the first instance saw.
    expect(await history.head("back")).toEqual({ epoch: next.epoch, offset: 6, start: 5 });
    expect(stored(await history.append(draft("back", 7))).message.offset).toBe(7);
    // Replay in the new epoch starts at its first message; the old epoch is not recovered.
    expect((await watched.since("back", 5, epoch)).complete).toBe(false);
    expect((await watched.since("back", 5, next.epoch)).messages.map((m) => m.offset)).toEqual([6, 7]);
  });

  test("a head read notices the loss too, and offsets seen on the backplane count", async () => {
    const { client, keys } = redisHistoryWithKeys(
      { historySize: 10, ttlSeconds: 600, dedupWindowSeconds: 300 },
      layout,
    );
    const options = { historySize: 10, ttlSeconds: 600, dedupWindowSeconds: 300 };
    const writer = new RedisHistoryStore(client, keys, options);
    const reader = new RedisHistoryStore(client, keys, options);
    let epoch = "";
    for (let i = 1; i <= 4; i++) epoch = stored(await writer.append(draft("seen", i))).epoch;
    // The reader only received offset 4 through the backplane.
    reader.observe("seen", epoch, 4);
    // Redis comes back holding only the first message of the room.
    await client.hset(keys.roomMeta("seen"), "offset", 1);
    await client.xtrim(keys.roomLog("seen"), "MAXLEN", 1);
    const head = await reader.head("seen");
    expect(head.epoch).not.toBe(epoch);
    expect(head.offset).toBe(4);
    expect(stored(await writer.append(draft("seen", 5))).message.offset).toBe(5);
  });
});

describe.each(factories)("session contract ($name)", (f) => {
  test("a saved session is taken once, and expires", async () => {
    const s = f.sessions();
    const session = { userId: "u", rooms: { lobby: { epoch: "e", offset: 3 } } };
    await s.save("conn-1", session, 60);
    expect(await s.take("conn-1")).toEqual(session);
    expect(await s.take("conn-1")).toBeUndefined();
    await s.save("conn-2", session, 1);
    await Bun.sleep(1100);
    expect(await s.take("conn-2")).toBeUndefined();
  });
});

describe.each(factories)("presence contract ($name)", (f) => {
  test("first connection in and last out are reported once per user, across instances", async () => {
    const [a, b] = f.presencePair(30);
    expect(await a.add("room", "u1", "c1")).toBe(true);
    expect(await b.add("room", "u1", "c2")).toBe(false);
    expect(await b.add("room", "u2", "c3")).toBe(true);
    expect(await a.members("room")).toEqual(["u1", "u2"]);
    expect(await a.remove("room", "u1", "c1")).toBe(false);
    expect(await b.remove("room", "u1", "c2")).toBe(true);
    expect(await b.remove("room", "u1", "c2")).toBe(false);
    expect(await b.members("room")).toEqual(["u2"]);
    await a.close();
    await b.close();
  });
});

describe.each(factories)("backplane contract ($name)", (f) => {
  test("envelopes reach other subscribed instances in order, never the publisher, never unsubscribed ones", async () => {
    const [a, b, c] = await f.backplanes(3);
    const got: Record<string, Envelope[]> = { b: [], c: [] };
    a!.onEnvelope(() => {
      throw new Error("the publisher received its own envelope");
    });
    b!.onEnvelope((e) => got.b!.push(e));
    c!.onEnvelope((e) => got.c!.push(e));
    await a!.subscribe("room:t");
    await b!.subscribe("room:t");
    for (let i = 1; i <= 20; i++) a!.publish({ topic: "room:t", frame: `f${i}`, epoch: "e", offset: i });
    const deadline = Date.now() + 3000;
    while (got.b!.length < 20 && Date.now() < deadline) await Bun.sleep(10);
    expect(got.b!.map((e) => e.offset)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(got.b![0]).toMatchObject({ topic: "room:t", frame: "f1", epoch: "e" });
    expect(got.c).toEqual([]);
    await b!.unsubscribe("room:t");
    a!.publish({ topic: "room:t", frame: "late" });
    await Bun.sleep(100);
    expect(got.b!.length).toBe(20);
    for (const p of [a, b, c]) await p!.close();
  });
});

describe("Redis Cluster key layout", () => {
  test("slots computed here are the cluster's, and every key a script or transaction touches shares one", async () => {
    const keys = redisKeys("chat:", "cluster");
    const node = clusterClient();
    const odd = ["lobby", "a}b", "{x}", "ünïcode 🎉", "room:with:colons", ""];
    for (const room of odd) {
      const slot = keySlot(keys.roomMeta(room));
      const roomKeys = [
        keys.roomMeta(room),
        keys.roomLog(room),
        keys.messageDedup(room, "u", "c-1"),
        keys.presenceConnections(room),
        keys.presenceUsers(room),
        keys.channel(roomTopic(room)),
      ];
      for (const key of roomKeys) {
        expect(`${key} ${keySlot(key)}`).toBe(`${key} ${slot}`);
        expect(await node.cluster("KEYSLOT", key)).toBe(slot);
      }
    }
    const user = keySlot(keys.dedup("erin", "d-1"));
    for (const key of [keys.session(sessionKey("erin", "conn-1")), keys.channel(userTopic("erin"))])
      expect(keySlot(key)).toBe(user);
    const registry = keySlot(keys.instances());
    for (const key of [keys.instanceAlive("i-1"), keys.instanceRooms("i-1"), keys.instanceEnvelopes()])
      expect(keySlot(key)).toBe(registry);
  });
});
