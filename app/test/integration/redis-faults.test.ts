// Redis failing under a running deployment: killed, restarted from a stale snapshot, hung. What a
// user would notice is asserted: an acknowledged message is delivered to every member and kept,
// its offset is never given to another message, and a refused send says `unavailable`, never nothing.
import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { connect } from "../../client/index";
import { Recorder } from "../client/support";
import { type RunningBinary, startBinary } from "../helpers/binary";
import { type Frame, TestClient } from "../helpers/client";
import { startRedisInstance, waitRedisUp } from "../helpers/cluster";
import { startRedis, type TestRedis } from "../helpers/redis";
import { connId, type TestServer } from "../helpers/server";
import { waitFor } from "../helpers/wait";

const started: TestRedis[] = [];
/** Binaries a failed test may have left running. */
const binaries: RunningBinary[] = [];
afterAll(async () => {
  for (const binary of binaries) if (binary.proc.exitCode === null) binary.proc.kill("SIGKILL");
  await Promise.all(started.map((r) => r.stop()));
});

async function redisServer(persistence: "aof" | "none") {
  const redis = await startRedis({ persistence });
  started.push(redis);
  return redis;
}

async function metricsText(instance: TestServer) {
  return (await fetch(`${instance.httpUrl}/metrics`)).text();
}

async function health(url: string) {
  return (await (await fetch(`${url}/health`)).json()) as Record<string, unknown>;
}

const HISTORY = { HISTORY_SIZE: "5000" };

interface Acked {
  room: string;
  id: string;
  offset: number;
  clientMsgId: string;
}

/**
 * Senders that behave like the client library: a refused message is sent again, with the same
 * clientMsgId, after a short pause, until it is acknowledged. Counts refusals and silences (no
 * answer within 5 s).
 */
function startSenders(senders: { client: TestClient; room: string; tag: string }[], pauseMs: number) {
  const acked: Acked[] = [];
  const outcome = { refused: 0, silent: 0, unexpected: [] as Frame[] };
  let stopping = false;
  let abandoned = false;
  const loops = senders.map(async ({ client, room, tag }) => {
    for (let n = 1; !stopping; n++) {
      const clientMsgId = `${tag}-${n}`;
      while (!abandoned) {
        let answer: Frame | undefined;
        try {
          answer = await client.request({ type: "message", room, text: clientMsgId, clientMsgId }, 5000);
        } catch {
          outcome.silent++;
        }
        if (answer?.type === "message_response") {
          acked.push({ room, id: answer.id, offset: answer.offset, clientMsgId });
          break;
        }
        if (answer?.code === "unavailable") outcome.refused++;
        else if (answer) outcome.unexpected.push(answer);
        await Bun.sleep(200);
      }
      await Bun.sleep(pauseMs);
    }
  });
  return {
    acked,
    outcome,
    /** Stops sending new messages; resolves once every message begun is acknowledged. */
    stop: async () => {
      stopping = true;
      await Promise.all(loops);
    },
    /** Stops at once, leaving unacknowledged sends as they are. */
    abandon: () => {
      stopping = true;
      abandoned = true;
    },
  };
}

function received(client: TestClient, room: string) {
  return client.frames.filter((f) => f.type === "message" && f.room === room);
}

/** Two instances, three rooms, two members per room on each instance, one sender per instance and room. */
async function deployment(redis: TestRedis) {
  const prefix = redis.prefix();
  const a = await startRedisInstance(redis, prefix, HISTORY);
  const b = await startRedisInstance(redis, prefix, HISTORY);
  await Promise.all([waitRedisUp(a), waitRedisUp(b)]);
  const members: { client: TestClient; room: string }[] = [];
  const senders: { client: TestClient; room: string; tag: string }[] = [];
  const epochs = new Map<string, string>();
  for (const room of ["r1", "r2", "r3"]) {
    for (const [name, instance] of [
      ["a", a],
      ["b", b],
    ] as [string, TestServer][]) {
      for (let i = 0; i < 2; i++) {
        const client = await TestClient.connect(instance.wsUrl(connId(), `user=${room}-${name}${i}`));
        const joined = await client.request({ type: "join", room });
        epochs.set(room, joined.epoch);
        members.push({ client, room });
        if (i === 0) senders.push({ client, room, tag: `${room}-${name}` });
      }
    }
  }
  return { a, b, members, senders, epochs };
}

/**
 * Kills Redis for `downMs` under load and restarts it; resolves with what every member received
 * and what was acknowledged.
 */
async function killUnderLoad(redis: TestRedis, downMs: number) {
  const { a, b, members, senders, epochs } = await deployment(redis);
  // About 40 messages a second in all.
  const load = startSenders(senders, 150);
  await waitFor(() => load.acked.length >= 40, { timeoutMs: 10_000, what: "40 messages before the fault" });
  await redis.kill();
  await waitFor(async () => (await health(a.httpUrl)).redis === "down", { what: "Redis reported down" });
  await Bun.sleep(downMs);
  const ackedBeforeRestart = load.acked.length;
  await redis.restart();
  await Promise.all([waitRedisUp(a), waitRedisUp(b)]);
  await waitFor(() => load.acked.length >= ackedBeforeRestart + 60, {
    timeoutMs: 15_000,
    what: "60 messages after the restart",
  });
  await load.stop();
  const byRoom = (room: string) => load.acked.filter((m) => m.room === room);
  // Wait (bounded) until every acknowledged message has reached every member of its room; what is
  // still missing then is counted by the test.
  const delivered = () =>
    members.every(({ client, room }) => {
      const ids = new Set(received(client, room).map((f) => f.id));
      return byRoom(room).every((m) => ids.has(m.id));
    });
  await waitFor(delivered, { timeoutMs: 10_000 }).catch(() => {});
  const sinceRestart = new Set(load.acked.slice(ackedBeforeRestart).map((m) => m.id));
  return { a, b, members, load, epochs, byRoom, sinceRestart };
}

async function finish(instances: TestServer[], members: { client: TestClient }[]) {
  await Promise.all(members.map((m) => m.client.close()));
  await Promise.all(instances.map((i) => i.stop()));
}

describe("Redis faults", () => {
  for (const persistence of ["aof", "none"] as const) {
    test(`Redis SIGKILLed for 20 s under load (${persistence === "aof" ? "AOF" : "no persistence"}): no acknowledged message lost, undelivered or renumbered; refused sends say unavailable`, async () => {
      const redis = await redisServer(persistence);
      const { a, b, members, load, epochs, byRoom, sinceRestart } = await killUnderLoad(redis, 20_000);
      expect(load.outcome.unexpected).toEqual([]);
      expect(load.outcome.silent).toBe(0);
      expect(load.outcome.refused).toBeGreaterThan(0);
      let undelivered = 0;
      let twice = 0;
      for (const { client, room } of members) {
        const frames = received(client, room);
        const ids = new Set(frames.map((f) => f.id));
        twice += frames.length - ids.size;
        undelivered += byRoom(room).filter((m) => !ids.has(m.id)).length;
      }
      expect({ undelivered, deliveredTwice: twice }).toEqual({ undelivered: 0, deliveredTwice: 0 });
      for (const room of ["r1", "r2", "r3"]) {
        const acked = byRoom(room);
        // No offset is given to two acknowledged messages, across the restart too.
        expect(new Set(acked.map((m) => m.offset)).size).toBe(acked.length);
        const joined = await members.find((m) => m.room === room)!.client.request({ type: "join", room });
        const stored = await wholeHistory(members.find((m) => m.room === room)!.client, room);
        if (persistence === "aof") {
          // Kept: every acknowledged message is in the history, under the offset it was acknowledged with.
          expect(joined.epoch).toBe(epochs.get(room));
          expect(acked.filter((m) => stored.get(m.id) !== m.offset)).toEqual([]);
        } else {
          // Redis came back empty: the room has a new epoch that every client sees, and what was sent
          // since is kept. (What was lost with Redis had been delivered, as asserted above.)
          expect(joined.epoch).not.toBe(epochs.get(room));
          for (const member of members.filter((m) => m.room === room))
            expect(member.client.frames.some((f) => f.type === "epoch" && f.epoch === joined.epoch)).toBe(true);
          const since = acked.filter((m) => sinceRestart.has(m.id));
          expect(since.length).toBeGreaterThan(0);
          expect(since.filter((m) => stored.get(m.id) !== m.offset)).toEqual([]);
        }
      }
      console.log(
        `redis kill (${persistence}): ${load.acked.length} acknowledged, ${load.outcome.refused} refused with unavailable, 0 lost`,
      );
      await finish([a, b], members);
    }, 90_000);
  }

  test("the client library keeps a message refused while Redis is down and sends it again until it is stored, once", async () => {
    const redis = await redisServer("aof");
    const prefix = redis.prefix();
    const a = await startRedisInstance(redis, prefix);
    const b = await startRedisInstance(redis, prefix);
    await Promise.all([waitRedisUp(a), waitRedisUp(b)]);
    const backoff = { minMs: 100, maxMs: 400 };
    const sender = connect(a.httpUrl, { connectionId: connId("lib"), user: "lib", backoff });
    const watcher = await TestClient.connect(b.wsUrl(connId(), "user=watcher"));
    await new Recorder(sender).state("open");
    await sender.join("kept");
    await watcher.request({ type: "join", room: "kept" });

    await redis.kill();
    await waitFor(async () => (await health(a.httpUrl)).redis === "down", { what: "Redis reported down" });
    let settled = false;
    const sending = sender.send("kept", "sent during the outage").finally(() => {
      settled = true;
    });
    await waitFor(async () => /^store_unavailable_total\{store="history"\} [1-9]/m.test(await metricsText(a)), {
      what: "the send refused",
    });
    expect(settled).toBe(false);
    await redis.restart();
    const sent = await sending;
    expect(sent).toMatchObject({ room: "kept", offset: 1, duplicate: false });
    expect(await watcher.next("message", 5000)).toMatchObject({ id: sent.id, text: "sent during the outage" });
    await watcher.sync();
    expect(watcher.all("message")).toEqual([]);
    sender.close();
    await watcher.close();
    await Promise.all([a.stop(), b.stop()]);
  }, 30_000);

  test("Redis restarted from a snapshot taken before the last 10 messages: a new epoch, new messages delivered to every member, the old offset is not recovered", async () => {
    const redis = await redisServer("none");
    const prefix = redis.prefix();
    const a = await startRedisInstance(redis, prefix);
    const b = await startRedisInstance(redis, prefix);
    await Promise.all([waitRedisUp(a), waitRedisUp(b)]);
    const alice = await TestClient.connect(a.wsUrl(connId(), "user=alice"));
    const carol = await TestClient.connect(a.wsUrl(connId(), "user=carol"));
    const bob = await TestClient.connect(b.wsUrl(connId(), "user=bob"));
    let epoch = "";
    for (const c of [alice, carol, bob]) epoch = (await c.request({ type: "join", room: "stale" })).epoch;
    const send = (client: TestClient, text: string) =>
      client.request({ type: "message", room: "stale", text, clientMsgId: text });
    for (let i = 1; i <= 20; i++) {
      expect((await send(alice, `m${i}`)).offset).toBe(i);
      if (i === 10) await redis.save();
    }
    for (const c of [bob, carol]) await c.next((f) => f.type === "message" && f.offset === 20);

    await redis.kill();
    await redis.restart();
    await Promise.all([waitRedisUp(a), waitRedisUp(b)]);

    // Redis holds offsets 1-10 of the old epoch. The next message is not numbered 11 again.
    const next = await send(alice, "after");
    expect(next).toMatchObject({ type: "message_response", offset: 21 });
    for (const member of [bob, carol]) {
      const changed = await member.next("epoch", 5000);
      expect(changed).toMatchObject({ room: "stale", offset: 20 });
      expect(changed.epoch).not.toBe(epoch);
      expect(await member.next((f) => f.type === "message" && f.text === "after", 5000)).toMatchObject({
        id: next.id,
        offset: 21,
      });
    }
    // From the other instance too.
    const fromBob = await send(bob, "from bob");
    expect(fromBob.offset).toBe(22);
    for (const member of [alice, carol])
      expect((await member.next((f) => f.type === "message" && f.text === "from bob", 5000)).id).toBe(fromBob.id);
    // A client coming back with the old epoch and offset 20 is told its view has a hole.
    const dave = await TestClient.connect(b.wsUrl(connId(), "user=dave"));
    const rejoined = await dave.request({ type: "join", room: "stale", lastOffset: 20, epoch });
    expect(rejoined).toMatchObject({ recovered: false, offset: 22 });
    expect(rejoined.epoch).not.toBe(epoch);
    const metrics = await (await fetch(`${a.httpUrl}/metrics`)).text();
    expect(Number(/^history_epoch_resets_total (\d+)/m.exec(metrics)?.[1])).toBe(1);
    await Promise.all([alice, carol, bob, dave].map((c) => c.close()));
    await Promise.all([a.stop(), b.stop()]);
  }, 30_000);

  test("after a stale snapshot, a sender on an instance new to the room cannot renumber silently: members who saw more get an epoch frame", async () => {
    const redis = await redisServer("none");
    const prefix = redis.prefix();
    const a = await startRedisInstance(redis, prefix);
    await waitRedisUp(a);
    const alice = await TestClient.connect(a.wsUrl(connId(), "user=alice"));
    const carol = await TestClient.connect(a.wsUrl(connId(), "user=carol"));
    const epoch = (await alice.request({ type: "join", room: "renumbered" })).epoch;
    await carol.request({ type: "join", room: "renumbered" });
    for (let i = 1; i <= 20; i++) {
      await alice.request({ type: "message", room: "renumbered", text: `m${i}`, clientMsgId: `m${i}` });
      if (i === 10) await redis.save();
    }
    await carol.next((f) => f.type === "message" && f.offset === 20);

    await redis.kill();
    await redis.restart();
    await waitRedisUp(a);
    // An instance that never saw the room has no floor to compare with: its message is stored at 11.
    const c = await startRedisInstance(redis, prefix);
    await waitRedisUp(c);
    const erin = await TestClient.connect(c.wsUrl(connId(), "user=erin"));
    await erin.request({ type: "join", room: "renumbered" });
    const sent = await erin.request({ type: "message", room: "renumbered", text: "from c", clientMsgId: "c1" });
    expect(sent.type).toBe("message_response");
    // Instance A delivered up to 20 in that epoch: its members learn that the room's history changed.
    for (const member of [alice, carol]) {
      const changed = await member.next("epoch", 5000);
      expect(changed.room).toBe("renumbered");
      expect(changed.epoch).not.toBe(epoch);
    }
    const rejoined = await carol.request({ type: "join", room: "renumbered", lastOffset: 20, epoch });
    expect(rejoined.recovered).toBe(false);
    await Promise.all([alice, carol, erin].map((cl) => cl.close()));
    await Promise.all([a.stop(), c.stop()]);
  }, 30_000);

  test("Redis SIGSTOPped for 10 s: /health says so within 5 s, sends are refused (not left unanswered), memory stays flat, SIGTERM during the hang exits in time", async () => {
    const redis = await redisServer("aof");
    const drainTimeoutMs = 3000;
    const server = await startBinary({
      REDIS_URL: redis.url,
      REDIS_KEY_PREFIX: redis.prefix(),
      REDIS_REQUIRED: "true",
      DRAIN_TIMEOUT: String(drainTimeoutMs),
    });
    binaries.push(server);
    await waitFor(async () => (await health(server.httpUrl)).redis === "up", { timeoutMs: 10_000, what: "Redis up" });
    const clients = [];
    for (let i = 0; i < 6; i++) {
      const client = await TestClient.connect(`ws://127.0.0.1:${server.port}/ws/chat/${connId()}?user=u${i}`);
      await client.request({ type: "join", room: "hang" });
      clients.push(client);
    }
    const load = startSenders(
      clients.map((client, i) => ({ client, room: "hang", tag: `u${i}` })),
      20,
    );
    await waitFor(() => load.acked.length >= 50, { timeoutMs: 10_000, what: "50 messages before the hang" });

    redis.pause();
    const pausedAt = Date.now();
    await waitFor(async () => (await health(server.httpUrl)).redis === "down", {
      timeoutMs: 5000,
      what: "/health to report Redis down",
    });
    const noticedMs = Date.now() - pausedAt;
    expect(await health(server.httpUrl)).toMatchObject({ status: "degraded", redis: "down" });
    const ready = await fetch(`${server.httpUrl}/health/ready`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ reason: "redis_down" });
    expect(await (await fetch(`${server.httpUrl}/metrics`)).text()).toMatch(/^backplane_up 0$/m);

    const rssAtNotice = rss(server.proc.pid);
    const refusedAtNotice = load.outcome.refused;
    await Bun.sleep(Math.max(0, 10_000 - (Date.now() - pausedAt)));
    const grewKb = rss(server.proc.pid) - rssAtNotice;
    // The senders kept sending all along, and were answered.
    expect(load.outcome.refused).toBeGreaterThan(refusedAtNotice + 50);
    expect(load.outcome.silent).toBe(0);
    expect(load.outcome.unexpected).toEqual([]);
    expect(grewKb).toBeLessThan(20 * 1024);

    const termAt = Date.now();
    const code = await server.stop("SIGTERM");
    const exitMs = Date.now() - termAt;
    redis.resume();
    expect(code).toBe(0);
    expect(exitMs).toBeLessThan(drainTimeoutMs + 5000);
    expect(server.output()).toContain("shutdown complete");
    expect(server.output()).toMatch(/"gaveUp":"redis down".*"message":"redis did not answer at shutdown/);
    console.log(
      `redis hang: noticed after ${noticedMs} ms, RSS +${grewKb} KB over the rest of 10 s, exit after SIGTERM in ${exitMs} ms`,
    );
    load.abandon();
  }, 60_000);
});

test("SIGTERM the moment Redis hangs (before it is noticed): exits within DRAIN_TIMEOUT + 5 s and says what it gave up on", async () => {
  const redis = await redisServer("aof");
  const drainTimeoutMs = 2000;
  const server = await startBinary({
    REDIS_URL: redis.url,
    REDIS_KEY_PREFIX: redis.prefix(),
    DRAIN_TIMEOUT: String(drainTimeoutMs),
  });
  binaries.push(server);
  await waitFor(async () => (await health(server.httpUrl)).redis === "up", { timeoutMs: 10_000, what: "Redis up" });
  const client = await TestClient.connect(`ws://127.0.0.1:${server.port}/ws/chat/${connId()}?user=late`);
  await client.request({ type: "join", room: "late" });
  redis.pause();
  const termAt = Date.now();
  const code = await server.stop("SIGTERM");
  const exitMs = Date.now() - termAt;
  redis.resume();
  expect(code).toBe(0);
  expect(exitMs).toBeLessThan(drainTimeoutMs + 5000);
  const gaveUp = server
    .output()
    .split("\n")
    .filter((line) => line.includes("redis did not answer at shutdown"));
  expect(gaveUp.length).toBe(1);
  // Noticed as down before the connections were closed, or still hung when they were.
  expect(JSON.parse(gaveUp[0]!).gaveUp).toMatch(/redis down|redis quit/);
  console.log(`redis hang at SIGTERM: exit in ${exitMs} ms`);
}, 30_000);

/** Every stored message of a room, id to offset, read a page at a time. */
async function wholeHistory(client: TestClient, room: string) {
  const stored = new Map<string, number>();
  let before: number | undefined;
  for (;;) {
    const page = await client.request({ type: "history", room, limit: 100, ...(before ? { before } : {}) });
    for (const m of page.messages as Frame[]) stored.set(m.id, m.offset);
    if (!page.hasMore || page.messages.length === 0) return stored;
    before = page.messages[0].offset;
  }
}

/** Resident memory of a process in KB. */
function rss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1]);
}
