// Direct messages kept in each user's inbox, over real sockets: a user offline when a direct
// message is sent gets it once on resume, on another instance; two online devices get each message
// once, never again from the replay; a resend is a duplicate; a stale epoch replays what is kept.
// The same scenarios on every store: memory, SQLite, and two instances sharing a real Redis.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../../src/observability/logger";
import { sqliteBackends } from "../../src/server";
import type { TestClient } from "../helpers/client";
import { startRedisInstance, waitRedisUp } from "../helpers/cluster";
import { startRedis, type TestRedis } from "../helpers/redis";
import { connId, startTestServer, type TestServer } from "../helpers/server";

/** Two instances of one deployment (the same one twice for the single-instance stores). */
interface Deployment {
  a: TestServer;
  b: TestServer;
  stop(): Promise<void>;
}

const INBOX_SIZE = "5";
let users = 0;
/** A user name no other test of the file uses (the stores outlive a test). */
const user = (name: string) => `${name}-${++users}`;

async function direct(from: TestClient, to: string, text: string, clientMsgId: string = crypto.randomUUID()) {
  const answer = await from.request({ type: "direct", to, text, clientMsgId });
  expect(answer).toMatchObject({ ok: true, for: "direct", to });
  return answer;
}

/** Connects `name` and resumes its inbox from `lastOffset` of `epoch` (nothing: the head only). */
async function resume(server: TestServer, name: string, lastOffset?: number, epoch?: string) {
  const client = await server.connect(connId(), `user=${name}`);
  const answer = await client.request({ type: "inbox", lastOffset, epoch });
  expect(answer).toMatchObject({ ok: true, for: "inbox" });
  return { client, answer };
}

function scenarios(name: string, deploy: () => Promise<Deployment>) {
  describe(name, () => {
    let d: Deployment;
    beforeAll(async () => {
      d = await deploy();
    });
    afterAll(async () => {
      await d.stop();
    });

    test("a direct message sent while the recipient is offline is delivered once when they resume, on the other instance", async () => {
      const bob = user("bob");
      const alice = user("alice");
      const before = await resume(d.a, bob);
      expect(before.answer).toMatchObject({ offset: 0, recovered: false, replayed: 0 });
      const { epoch } = before.answer;
      await before.client.close();

      const sender = await d.a.connect(connId(), `user=${alice}`);
      const first = await direct(sender, bob, "are you there?");
      const second = await direct(sender, bob, "call me");

      const back = await d.b.connect(connId(), `user=${bob}`);
      const answer = await back.request({ type: "inbox", lastOffset: 0, epoch });
      expect(answer).toMatchObject({ epoch, offset: 2, recovered: true, replayed: 2 });
      const got = back.all("direct");
      expect(got.map((f) => [f.id, f.text, f.offset, f.epoch, f.from, f.to])).toEqual([
        [first.id, "are you there?", 1, epoch, alice, bob],
        [second.id, "call me", 2, epoch, alice, bob],
      ]);
      await back.sync();
      expect(back.all("direct")).toHaveLength(2);

      // Resumed from where it is: nothing again.
      const again = await resume(d.a, bob, 2, epoch);
      expect(again.answer).toMatchObject({ offset: 2, recovered: true, replayed: 0 });
      await again.client.sync();
      expect(again.client.all("direct")).toEqual([]);
    });

    test("two online devices get each direct message once, and a live one is not replayed by a later resume", async () => {
      const bob = user("bob");
      const alice = user("alice");
      const phone = await resume(d.a, bob);
      const { epoch } = phone.answer;
      // The laptop is connected but has not resumed yet: it gets the message live...
      const laptop = await d.b.connect(connId(), `user=${bob}`);
      const sender = await d.a.connect(connId(), `user=${alice}`);
      const senderTab = await d.b.connect(connId(), `user=${alice}`);
      const sent = await direct(sender, bob, "hello both");
      for (const device of [phone.client, laptop]) {
        expect(await device.next("direct")).toMatchObject({ id: sent.id, offset: 1, epoch, text: "hello both" });
      }
      // ...and its resume from before that message does not send it a second time.
      const resumed = await laptop.request({ type: "inbox", lastOffset: 0, epoch });
      expect(resumed).toMatchObject({ offset: 1, recovered: true, replayed: 1 });
      // The sender's other tab shows what was sent, at the sender's own inbox offset.
      expect(await senderTab.next("direct")).toMatchObject({ id: sent.id, offset: sent.offset, epoch: sent.epoch });
      for (const device of [phone.client, laptop, senderTab]) {
        await device.sync();
        expect(device.all("direct")).toEqual([]);
      }
    });

    test("a resend of an acknowledged direct message is a duplicate: kept once, delivered once", async () => {
      const bob = user("bob");
      const alice = user("alice");
      const { client: device, answer } = await resume(d.b, bob);
      const sender = await d.a.connect(connId(), `user=${alice}`);
      const first = await direct(sender, bob, "once", "same-id");
      const resent = await direct(sender, bob, "once", "same-id");
      expect(resent).toMatchObject({ duplicate: true, id: first.id, ts: first.ts, offset: first.offset });
      expect(await device.next("direct")).toMatchObject({ id: first.id, offset: 1 });
      await device.sync();
      expect(device.all("direct")).toEqual([]);
      const later = await resume(d.a, bob, 0, answer.epoch);
      expect(later.answer).toMatchObject({ offset: 1, replayed: 1 });
    });

    test("a send that was kept in the recipient's inbox only (refused halfway) is completed by its resend, without a second copy", async () => {
      const alice = user("alice");
      const bob = user("bob");
      const device = await resume(d.b, bob);
      // What the first attempt left: the recipient's entry, then the sender's append refused.
      const first = await d.a.server.backends.inbox.append(bob, {
        id: "first-attempt-id",
        from: alice,
        to: bob,
        text: "halfway",
        ts: 1_000,
        clientMsgId: "half-1",
      });
      const sender = await d.a.connect(connId(), `user=${alice}`);
      const resent = await direct(sender, bob, "halfway", "half-1");
      expect(resent).toMatchObject({ id: "first-attempt-id", ts: 1_000, offset: 1 });
      expect(resent.duplicate).toBeUndefined();
      expect(await device.client.next("direct")).toMatchObject({ id: "first-attempt-id", offset: first.entry.offset });
      await device.client.sync();
      expect(device.client.all("direct")).toEqual([]);
      const later = await resume(d.b, bob, 0, device.answer.epoch);
      expect(later.answer).toMatchObject({ offset: 1, replayed: 1 });
    });

    test("a clientMsgId reused for another recipient is a new message for each, in the sender's inbox too", async () => {
      const alice = user("alice");
      const [bob, carol] = [user("bob"), user("carol")];
      const sender = await d.a.connect(connId(), `user=${alice}`);
      const toBob = await direct(sender, bob, "for bob", "reused");
      const toCarol = await direct(sender, carol, "for carol", "reused");
      expect(toCarol.duplicate).toBeUndefined();
      expect(toCarol.id).not.toBe(toBob.id);
      expect(toCarol.offset).toBe(toBob.offset + 1);
      const { client } = await resume(d.b, alice, 0);
      expect(client.all("direct").map((f) => [f.to, f.text])).toEqual([
        [bob, "for bob"],
        [carol, "for carol"],
      ]);
    });

    test("a resume with a stale epoch gets every kept message of the current one, not recovered", async () => {
      const bob = user("bob");
      const sender = await d.a.connect(connId(), `user=${user("alice")}`);
      for (let i = 1; i <= 3; i++) await direct(sender, bob, `m${i}`);
      const { client, answer } = await resume(d.b, bob, 7, "an-epoch-of-before");
      expect(answer).toMatchObject({ offset: 3, recovered: false, replayed: 3 });
      expect(answer.epoch).not.toBe("an-epoch-of-before");
      expect(client.all("direct").map((f) => [f.text, f.offset, f.epoch])).toEqual([
        ["m1", 1, answer.epoch],
        ["m2", 2, answer.epoch],
        ["m3", 3, answer.epoch],
      ]);
    });

    test(`an inbox keeps its newest INBOX_SIZE (${INBOX_SIZE}) messages: a resume from further back is not recovered`, async () => {
      const bob = user("bob");
      const { client: first, answer } = await resume(d.a, bob);
      await first.close();
      const sender = await d.b.connect(connId(), `user=${user("alice")}`);
      for (let i = 1; i <= 8; i++) await direct(sender, bob, `m${i}`);
      const { client, answer: resumed } = await resume(d.a, bob, 0, answer.epoch);
      expect(resumed).toMatchObject({ offset: 8, recovered: false, replayed: 5 });
      // Each once; the newest may come live first (published as this connection opened on an
      // instance still subscribed to the user after the previous connection), before the replay.
      expect(
        client
          .all("direct")
          .map((f) => f.offset)
          .sort((x, y) => x - y),
      ).toEqual([4, 5, 6, 7, 8]);
    });

    test("a client that never resumes (protocol v1) still gets direct messages live, once", async () => {
      const bob = user("bob");
      const device = await d.b.connect(connId(), `user=${bob}`);
      const sender = await d.a.connect(connId(), `user=${user("alice")}`);
      const sent = await direct(sender, bob, "live only");
      expect(await device.next("direct")).toMatchObject({ id: sent.id, text: "live only" });
      await device.sync();
      expect(device.all("direct")).toEqual([]);
    });
  });
}

scenarios("in memory (one instance)", async () => {
  const server = await startTestServer({ INBOX_SIZE });
  return { a: server, b: server, stop: () => server.stop() };
});

const dataDir = mkdtempSync(join(tmpdir(), "chat-inbox-"));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));
scenarios("on SQLite (one instance)", async () => {
  const server = await startTestServer({ INBOX_SIZE, DATA_DIR: dataDir }, (config, metrics) =>
    sqliteBackends(config, { metrics, logger: createLogger(config) }),
  );
  return { a: server, b: server, stop: () => server.stop() };
});

let redis: TestRedis | undefined;
afterAll(async () => {
  await redis?.stop();
});
scenarios("on two instances sharing Redis", async () => {
  redis = await startRedis();
  const prefix = redis.prefix();
  const a = await startRedisInstance(redis, prefix, { INBOX_SIZE });
  const b = await startRedisInstance(redis, prefix, { INBOX_SIZE });
  await Promise.all([waitRedisUp(a), waitRedisUp(b)]);
  return { a, b, stop: async () => void (await Promise.all([a.stop(), b.stop()])) };
});
