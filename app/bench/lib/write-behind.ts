// The write-behind into PostgreSQL, measured in this process against the run's Redis and PostgreSQL:
//   drain  a backlog of messages appended while no persister ran (as after a database outage),
//          then one persister (one instance's) writing it all: messages per second
//   lag    messages appended at a steady rate with the persister running: time from the append
//          (the sender's acknowledgement) to the commit in PostgreSQL, per message
// The appends go through the server's own RedisHistoryStore (the append script with write-behind)
// and the persister is the server's RedisPersister: the same code as an instance runs.

import Redis from "ioredis";
import { loadConfig } from "../../src/config";
import type { MessageDraft } from "../../src/history/history";
import { RedisHistoryStore } from "../../src/history/redis";
import { createLogger } from "../../src/observability/logger";
import { redisKeys } from "../../src/redis/keys";
import { PostgresMessageStore } from "../../src/store/postgres";
import { RedisPersister } from "../../src/store/write-behind";
import { processCpuSeconds } from "./cpu";
import { type Percentiles, percentiles } from "./stats";

export interface WriteBehindResult {
  drain: {
    messages: number;
    rooms: number;
    seconds: number;
    perSecond: number;
    /** CPU µs per message drained: this process (the persister), PostgreSQL, Redis. */
    cpuPerMessage: { persister: number; database: number; redis: number };
  };
  lag: { rate: number; seconds: number; delaysMs: Percentiles };
}

const TEXT = "x".repeat(100);

export async function measureWriteBehind(
  redisUrl: string,
  databaseUrl: string,
  options: { drainMessages: number; rooms: number; rate: number; durationMs: number },
  /** CPU seconds used so far by PostgreSQL and by Redis. */
  cpu: { database: () => number; redis: () => number },
): Promise<WriteBehindResult> {
  const logger = createLogger(loadConfig({ LOG_LEVEL: "error" }));
  const redis = new Redis(redisUrl);
  const database = await PostgresMessageStore.open({ url: databaseUrl, poolSize: 4, statementTimeoutMs: 5000 });
  const run = async (tag: string) => {
    const keys = redisKeys(`wb-${tag}:`);
    const history = new RedisHistoryStore(redis, keys, {
      historySize: 100,
      ttlSeconds: 3600,
      dedupWindowSeconds: 60,
      writeBehind: true,
    });
    const persister = new RedisPersister(
      redis,
      keys,
      database,
      { instanceId: "bench", historySize: 100, historyTtlSeconds: 3600 },
      logger,
    );
    return { history, persister };
  };
  let sent = 0;
  const draft = (rooms: number): MessageDraft => {
    const i = sent++;
    return {
      room: `room-${i % rooms}`,
      id: `m${i}`,
      from: `u${i % 97}`,
      text: TEXT,
      ts: Date.now(),
      clientMsgId: `c${i}`,
    };
  };
  try {
    // Drain: the backlog first, then the persister alone.
    const drain = await run("drain");
    for (let i = 0; i < options.drainMessages; i += 1000) {
      await Promise.all(
        Array.from({ length: Math.min(1000, options.drainMessages - i) }, () =>
          drain.history.append(draft(options.rooms)),
        ),
      );
    }
    const started = performance.now();
    const cpuBefore = [processCpuSeconds(), cpu.database(), cpu.redis()];
    drain.persister.start();
    await drain.persister.scan();
    while (drain.persister.stats.persisted < options.drainMessages) await Bun.sleep(5);
    const seconds = (performance.now() - started) / 1000;
    const [persister, db, rd] = [processCpuSeconds(), cpu.database(), cpu.redis()].map(
      (c, i) => ((c - cpuBefore[i]!) / options.drainMessages) * 1e6,
    );
    await drain.persister.stop();

    // Lag: paced appends (one tick per 10 ms) with the persister running.
    const lag = await run("lag");
    const delays: number[] = [];
    lag.persister.onCommit = (_n, _s, d) => {
      for (const x of d) delays.push(x * 1000);
    };
    lag.persister.start();
    const perTick = options.rate / 100;
    const t0 = performance.now();
    const appends: Promise<unknown>[] = [];
    let due = 0;
    while (performance.now() - t0 < options.durationMs) {
      const should = Math.floor(((performance.now() - t0) / 1000) * options.rate);
      for (; due < should; due++) appends.push(lag.history.append(draft(options.rooms)));
      await Bun.sleep(Math.max(1, 10 - ((performance.now() - t0) % 10)));
      if (perTick <= 0) break;
    }
    await Promise.all(appends);
    const deadline = Date.now() + 10_000;
    while (delays.length < due && Date.now() < deadline) await Bun.sleep(5);
    await lag.persister.stop();
    return {
      drain: {
        messages: options.drainMessages,
        rooms: options.rooms,
        seconds,
        perSecond: options.drainMessages / seconds,
        cpuPerMessage: { persister: persister!, database: db!, redis: rd! },
      },
      lag: { rate: options.rate, seconds: options.durationMs / 1000, delaysMs: percentiles(delays) },
    };
  } finally {
    redis.disconnect();
    await database.close();
  }
}
