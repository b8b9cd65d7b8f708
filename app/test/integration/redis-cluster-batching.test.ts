// Room appends on a Redis Cluster are sent as one script call per master, whatever the slots of its
// rooms: what a cluster of 3 masters (started by the test) shows of it. The calls each master ran are
// counted from its INFO commandstats; what was stored is read back; the messages published are
// received on the rooms' shard channels.
import { afterAll, beforeAll, expect, test } from "bun:test";
import Redis, { Cluster } from "ioredis";
import type { AppendResult, MessageDraft } from "../../src/history/history";
import { RedisHistoryStore } from "../../src/history/redis";
import { redisKeys } from "../../src/redis/keys";
import { keySlot } from "../../src/redis/slots";
import { roomTopic } from "../../src/rooms/topics";
import { startRedisCluster, type TestCluster } from "../helpers/redis-cluster";
import { waitFor } from "../helpers/wait";

let cluster: TestCluster;
beforeAll(async () => {
  cluster = await startRedisCluster();
}, 60_000);
afterAll(() => cluster?.stop());

/**
 * A store on its own cluster client that reads the slot map only when it connects and when Redis
 * answers MOVED, so a test can move a slot behind its back.
 */
async function store(prefix: string) {
  const client = new Cluster(
    cluster.ports.map((port) => ({ host: "127.0.0.1", port })),
    { slotsRefreshInterval: 0, enableOfflineQueue: false },
  );
  client.on("error", () => {});
  await new Promise<void>((resolve) => client.once("ready", () => resolve()));
  const keys = redisKeys(prefix, "cluster");
  const history = new RedisHistoryStore(client, keys, {
    historySize: 1000,
    ttlSeconds: 600,
    dedupWindowSeconds: 300,
    publishAs: "batching-test",
  });
  return { client, keys, history };
}

/** `count` rooms whose slots are all different and owned by the master on `port`. */
async function roomsOn(prefix: string, port: number, count: number, tag: string) {
  const keys = redisKeys(prefix, "cluster");
  const rooms: string[] = [];
  const slots = new Set<number>();
  for (let n = 0; rooms.length < count; n++) {
    const room = `${tag}-${n}`;
    const slot = keySlot(keys.roomMeta(room));
    if (slots.has(slot) || (await cluster.masterOf(`{room:${room}}`)) !== port) continue;
    slots.add(slot);
    rooms.push(room);
  }
  return rooms;
}

/** Script calls (EVALSHA and EVAL) each master has run so far. */
async function scriptCalls(): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (const port of await cluster.masters()) {
    const info = (await cluster.node(port).info("commandstats")) as string;
    let calls = 0;
    for (const match of info.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)) calls += Number(match[1]);
    out.set(port, calls);
  }
  return out;
}

const delta = (before: Map<number, number>, after: Map<number, number>) =>
  new Map([...after].map(([port, calls]) => [port, calls - (before.get(port) ?? 0)]));

let drafts = 0;
const draft = (room: string, clientMsgId = `m${++drafts}`, from = "alice"): MessageDraft => ({
  room,
  id: crypto.randomUUID(),
  from,
  text: `${room} ${clientMsgId}`,
  ts: Date.now(),
  clientMsgId,
});

const stored = (result: AppendResult) => {
  if (result.status !== "stored") throw new Error(`not stored: ${JSON.stringify(result)}`);
  return result;
};

test("messages of rooms on several slots of each master, appended in one turn, are stored with one script call per master, published on each room's channel, and deduplicated", async () => {
  const prefix = cluster.prefix();
  const { client, keys, history } = await store(prefix);
  const masters = await cluster.masters();
  const byMaster = await Promise.all(masters.map((port, m) => roomsOn(prefix, port, 4, `grp${m}`)));
  const rooms = byMaster.flat();
  // A subscriber of every room's channel on its master.
  const received = new Map<string, number[]>();
  const subscribers: Redis[] = [];
  try {
    for (const [m, port] of masters.entries()) {
      const subscriber = new Redis(port, "127.0.0.1");
      subscribers.push(subscriber);
      subscriber.on("smessage", (channel: string, payload: string) => {
        const offsets = received.get(channel) ?? [];
        offsets.push((JSON.parse(payload) as { offset: number }).offset);
        received.set(channel, offsets);
      });
      // One SSUBSCRIBE per channel: Redis takes several only of one slot.
      for (const room of byMaster[m]!) await subscriber.ssubscribe(keys.channel(roomTopic(room)));
    }
    // The script is loaded on every master first, so each call below is one EVALSHA.
    await Promise.all(rooms.map((room) => history.append(draft(room))));

    const before = await scriptCalls();
    const sent = rooms.flatMap((room) => [draft(room), draft(room)]);
    const results = (await Promise.all(sent.map((d) => history.append(d)))).map(stored);
    expect(delta(before, await scriptCalls())).toEqual(new Map(masters.map((port) => [port, 1])));

    for (const room of rooms) {
      const mine = results.filter((r) => r.message.room === room);
      expect(mine.map((r) => r.message.offset)).toEqual([2, 3]);
      const replay = await history.since(room, 0);
      expect(replay.messages.map((m) => m.offset)).toEqual([1, 2, 3]);
      expect(replay.messages.slice(1).map((m) => m.id)).toEqual(mine.map((r) => r.message.id));
    }
    await waitFor(() => rooms.every((room) => received.get(keys.channel(roomTopic(room)))?.length === 3), {
      what: "every message published on its room's channel",
    });
    for (const room of rooms) expect(received.get(keys.channel(roomTopic(room)))).toEqual([1, 2, 3]);

    // The same messages again, in one turn: each answered with its receipt, nothing stored twice.
    const repeats = await Promise.all(sent.map((d) => history.append({ ...d, id: crypto.randomUUID() })));
    for (const [i, repeat] of repeats.entries())
      expect(repeat).toEqual({
        status: "duplicate",
        receipt: { offset: results[i]!.message.offset, room: sent[i]!.room, id: sent[i]!.id, ts: sent[i]!.ts },
      });
    for (const room of rooms) expect((await history.head(room)).offset).toBe(3);

    // A message and its repeat in the same call (rooms of several slots on each master): stored once.
    const once = rooms.map((room) => draft(room));
    const twice = await Promise.all(
      once.flatMap((d) => [history.append(d), history.append({ ...d, id: crypto.randomUUID() })]),
    );
    for (const [k, d] of once.entries()) {
      expect(stored(twice[2 * k]!).message.offset).toBe(4);
      expect(twice[2 * k + 1]).toEqual({
        status: "duplicate",
        receipt: { offset: 4, room: d.room, id: d.id, ts: d.ts },
      });
    }
  } finally {
    for (const subscriber of subscribers) subscriber.disconnect();
    client.disconnect();
  }
}, 60_000);

test("a slot moved to another master since the slot map was read: its room's messages are stored on the new master, and the other rooms of the old one in the same call", async () => {
  const prefix = cluster.prefix();
  const { client, history } = await store(prefix);
  try {
    const [from, to] = await cluster.masters();
    const [moved, ...others] = await roomsOn(prefix, from!, 4, "mv");
    const rooms = [moved!, ...others];
    const first = await Promise.all(rooms.map((room) => history.append(draft(room))));
    const epochs = first.map((r) => stored(r).epoch);
    // The script is loaded on the new master too, so each call below is one EVALSHA.
    const [there] = await roomsOn(prefix, to!, 1, "there");
    stored(await history.append(draft(there!)));

    await cluster.moveSlot(keySlot(redisKeys(prefix, "cluster").roomMeta(moved!)), to!);
    expect(await cluster.masterOf(`{room:${moved}}`)).toBe(to!);
    const before = await scriptCalls();
    // The store's slot map still puts the moved slot on `from`.
    const results = (await Promise.all(rooms.map((room) => history.append(draft(room))))).map(stored);
    const calls = delta(before, await scriptCalls());
    // One call on the old master for all four (the moved room answered as not served there), then
    // one for the moved room alone on its new master.
    expect(calls.get(from!)).toBe(1);
    expect(calls.get(to!)).toBe(1);
    expect(results.map((r) => r.message.offset)).toEqual([2, 2, 2, 2]);
    expect(results.map((r) => r.epoch)).toEqual(epochs);
    for (const room of rooms) expect((await history.since(room, 0)).messages.map((m) => m.offset)).toEqual([1, 2]);
  } finally {
    client.disconnect();
  }
}, 60_000);

test("a batch while one room's slot is half moved: the other rooms of its master are stored at once; the moving room is stored once after the move, when resent, and no offset is skipped", async () => {
  const prefix = cluster.prefix();
  const { client, history } = await store(prefix);
  try {
    const [from, to] = await cluster.masters();
    const [moving, ...others] = await roomsOn(prefix, from!, 4, "half");
    // Enough keys in the moving room's slot that the move stops half way (batches of 2 keys).
    for (let n = 0; n < 3; n++) stored(await history.append(draft(moving!)));
    await Promise.all(others.map((room) => history.append(draft(room))));

    const slot = keySlot(redisKeys(prefix, "cluster").roomMeta(moving!));
    let batches = 0;
    let retried: MessageDraft | undefined;
    await cluster.moveSlot(
      slot,
      to!,
      async () => {
        // Once a first batch of keys has moved: some of the room's keys are on each master.
        if (++batches !== 2) return;
        // The moving room first and last in the batch: neither the order nor the position matters.
        const mine = [draft(moving!), draft(moving!)];
        const theirs = others.map((room) => draft(room));
        const settled = [mine[0]!, ...theirs, mine[1]!].map((d) =>
          history.append(d).then(
            (result) => ({ draft: d, result, error: undefined }),
            (error: Error) => ({ draft: d, result: undefined, error }),
          ),
        );
        const answers = await Promise.all(settled);
        for (const answer of answers.filter((a) => a.draft.room !== moving))
          expect(stored(answer.result!).message.offset).toBe(2);
        const refused = answers.filter((a) => a.draft.room === moving);
        // Refused while half moved, once the cluster client has used up its redirections; nothing
        // stored (checked below). Its last error is TRYAGAIN or MOVED by chance: ioredis retries a
        // TRYAGAIN on a random master, which may answer MOVED.
        for (const answer of refused)
          expect(answer.error?.message).toMatch(/^Too many Cluster redirections\. Last error: .*(TRYAGAIN|MOVED)/);
        retried = refused[0]!.draft;
      },
      2,
    );
    expect(batches).toBeGreaterThan(2);
    expect(retried).toBeDefined();
    // Resent after the move: stored once, right after the three before.
    expect(stored(await history.append(retried!)).message.offset).toBe(4);
    expect(await history.append({ ...retried!, id: crypto.randomUUID() })).toMatchObject({ status: "duplicate" });
    expect((await history.since(moving!, 0)).messages.map((m) => m.offset)).toEqual([1, 2, 3, 4]);
  } finally {
    client.disconnect();
  }
}, 60_000);
