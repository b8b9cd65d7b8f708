// Read positions and unread counts over real sockets: one user's two devices, on SQLite (kept across
// a restart) and on two instances sharing a real Redis.
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

async function post(writer: TestClient, room: string, count: number) {
  await writer.request({ type: "join", room });
  // Fresh clientMsgIds: the dedup window outlives a restart of the SQLite server.
  for (let i = 1; i <= count; i++)
    await writer.request({ type: "message", room, text: `${room} ${i}`, clientMsgId: crypto.randomUUID() });
}

describe("on SQLite", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "chat-unread-"));
  const servers: TestServer[] = [];
  const start = async () => {
    const server = await startTestServer({ DATA_DIR: dataDir }, (config, metrics) =>
      sqliteBackends(config, { metrics, logger: createLogger(config) }),
    );
    servers.push(server);
    return server;
  };
  afterAll(async () => {
    for (const server of servers) await server.stop().catch(() => {});
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("a read from one device moves the other's unread count, forward only, and survives a restart", async () => {
    const first = await start();
    await post(await first.connect(connId(), "user=writer"), "ur-lobby", 5);
    const phone = await first.connect(connId(), "user=ann");
    const laptop = await first.connect(connId(), "user=ann");
    expect(await phone.request({ type: "join", room: "ur-lobby" })).toMatchObject({
      offset: 5,
      readOffset: 0,
      unread: 5,
    });
    await laptop.request({ type: "join", room: "ur-lobby" });

    expect(await phone.request({ type: "read", room: "ur-lobby", offset: 3 })).toMatchObject({
      ok: true,
      for: "read",
      offset: 3,
      readOffset: 3,
    });
    expect(await laptop.next("read")).toMatchObject({ room: "ur-lobby", from: "ann", offset: 3 });
    expect(await laptop.request({ type: "join", room: "ur-lobby" })).toMatchObject({ readOffset: 3, unread: 2 });

    // Behind the stored position: it stays. Past the newest message: it stops at the newest.
    expect((await laptop.request({ type: "read", room: "ur-lobby", offset: 1 })).readOffset).toBe(3);
    expect((await laptop.request({ type: "read", room: "ur-lobby", offset: 99 })).readOffset).toBe(5);
    // Another user's position is their own.
    const bob = await first.connect(connId(), "user=bob");
    expect(await bob.request({ type: "join", room: "ur-lobby" })).toMatchObject({ readOffset: 0, unread: 5 });
    await first.stop();

    const second = await start();
    await post(await second.connect(connId(), "user=writer"), "ur-lobby", 2);
    const tablet = await second.connect(connId(), "user=ann");
    expect(await tablet.request({ type: "join", room: "ur-lobby" })).toMatchObject({
      offset: 7,
      readOffset: 5,
      unread: 2,
    });
  });
});

describe("on two instances sharing Redis", () => {
  let redis: TestRedis;
  const instances: TestServer[] = [];
  beforeAll(async () => {
    redis = await startRedis();
    const prefix = redis.prefix();
    for (let i = 0; i < 2; i++) instances.push(await startRedisInstance(redis, prefix));
    await Promise.all(instances.map((i) => waitRedisUp(i)));
  });
  afterAll(async () => {
    await Promise.all(instances.map((i) => i.stop()));
    await redis.stop();
  });

  test("a position stored through one instance is the other's, with the unread count", async () => {
    const [a, b] = instances as [TestServer, TestServer];
    await post(await a.connect(connId(), "user=writer"), "ur-shared", 4);
    const phone = await a.connect(connId(), "user=cat");
    await phone.request({ type: "join", room: "ur-shared" });
    expect((await phone.request({ type: "read", room: "ur-shared", offset: 3 })).readOffset).toBe(3);
    const laptop = await b.connect(connId(), "user=cat");
    expect(await laptop.request({ type: "join", room: "ur-shared" })).toMatchObject({
      offset: 4,
      readOffset: 3,
      unread: 1,
    });
    expect((await laptop.request({ type: "read", room: "ur-shared", offset: 2 })).readOffset).toBe(3);
  });
});
