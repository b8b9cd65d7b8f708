// Direct messages written behind into PostgreSQL, measured in this process against a Redis and a
// PostgreSQL the run starts (loopback; Redis without persistence, PostgreSQL with fsync on):
//   append  direct messages kept in both inboxes (two appends each, as the `direct` handler does),
//           `--concurrency` in flight, through the server's RedisInboxStore without write-behind and
//           with it (its persister draining meanwhile, in this process as in an instance),
//           alternately: direct messages per second and the latency of one (the sender's
//           acknowledgement waits for both appends), Redis script calls per direct message (the
//           appends' and the persister's), CPU per direct message of this process (the appends
//           and the persister), Redis and PostgreSQL, and the ratio; a diagnostic third setup has the
//           write-behind scripts without a persister, to tell the appends' own cost from the
//           persister's share of Redis and the CPU. Every inbox has had a message
//           before the measurement (steady state); an inbox's first one with write-behind also asks
//           PostgreSQL for its head, measured apart as `first contact`
//   drain   a backlog of inbox entries appended while no persister ran (as after a database outage),
//           spread over `--users` inboxes, then one persister (one instance's) writing it all
//   replay  after the drain, a resume from offset 0 of a drained inbox (about drain / users entries,
//           of which Redis keeps the newest INBOX_SIZE = 20): the older ones read from PostgreSQL
//           (ArchivedInboxStore), latency per resume
// The stores and the persister are the server's own code. A benchmark measures; it never fails on a
// figure.
//
// Usage: bun run bench/inbox.ts [--dms N] [--users N] [--concurrency N] [--drain N] [--rounds N]

import Redis from "ioredis";
import { loadConfig } from "../src/config";
import { ArchivedInboxStore } from "../src/inbox/archived";
import type { InboxStore } from "../src/inbox/inbox";
import { RedisInboxStore } from "../src/inbox/redis";
import { createLogger } from "../src/observability/logger";
import type { DirectMessage } from "../src/protocol/server-frames";
import { redisKeys } from "../src/redis/keys";
import { createInboxPersister } from "../src/store/inbox-write-behind";
import { PostgresMessageStore } from "../src/store/postgres";
import { PostgresInboxArchive } from "../src/store/postgres-inbox";
import { cpuSeconds, processCpuSeconds } from "./lib/cpu";
import { type PostgresServer, startPostgres } from "./lib/postgres-server";
import { BenchError } from "./lib/processes";
import { startRedis, stopRedis } from "./lib/redis-server";
import { type Percentiles, percentiles } from "./lib/stats";

const TEXT = "x".repeat(100);
const INBOX_SIZE = 20;

interface Options {
  dms: number;
  users: number;
  concurrency: number;
  drain: number;
  rounds: number;
}

function usage() {
  return `Usage: bun run bench/inbox.ts [options]
  --dms N          direct messages per append measurement (default 20000)
  --users N        inboxes the messages are spread over (default 1000)
  --concurrency N  direct messages in flight (default 64)
  --drain N        inbox entries in the drain backlog (default 50000)
  --rounds N       append measurements per setup, alternating (default 3)
  -h, --help       this text`;
}

function parse(argv: string[]): Options {
  const options: Options = { dms: 20_000, users: 1000, concurrency: 64, drain: 50_000, rounds: 3 };
  const int = (flag: string, value: string | undefined) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new BenchError(`${flag} takes a positive integer\n${usage()}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    switch (arg) {
      case "--dms":
      case "--users":
      case "--concurrency":
      case "--drain":
      case "--rounds":
        options[arg.slice(2) as keyof Options] = int(arg, argv[++i]);
        break;
      case "-h":
      case "--help":
        console.log(usage());
        process.exit(0);
        break;
      default:
        throw new BenchError(`unknown option ${arg}\n${usage()}`);
    }
  }
  return options;
}

let sent = 0;
function dm(users: number): DirectMessage {
  const i = sent++;
  return {
    id: `d${i}`,
    from: `u${i % users}`,
    to: `u${(i * 7 + 1) % users}`,
    text: TEXT,
    ts: Date.now(),
    clientMsgId: `c${i}`,
  };
}

/** Sends `count` direct messages (two appends each), `concurrency` at once; latency per message. */
async function sendAll(inbox: InboxStore, options: Options) {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < options.dms) {
      next++;
      const message = dm(options.users);
      const t = performance.now();
      await inbox.append(message.to, message);
      await inbox.append(message.from, message);
      latencies.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return { perSecond: options.dms / ((performance.now() - started) / 1000), latency: percentiles(latencies) };
}

async function main() {
  const options = parse(process.argv.slice(2));
  const logger = createLogger(loadConfig({ LOG_LEVEL: "error" }));
  const step = (what: string) => console.error(`# ${what}`);
  step("starting redis and postgres");
  const redisServer = await startRedis();
  let postgres: PostgresServer | undefined;
  try {
    postgres = await startPostgres();
    const redis = new Redis(redisServer.url);
    const database = await PostgresMessageStore.open({ url: postgres.url, poolSize: 4, statementTimeoutMs: 5000 });
    const archive = new PostgresInboxArchive(database.sql, 5000);
    const store = (tag: string, behind: boolean, drain = true) => {
      const keys = redisKeys(`bench-${tag}:`);
      const persister =
        behind && drain
          ? createInboxPersister(
              redis,
              keys,
              archive,
              { instanceId: "bench", inboxSize: INBOX_SIZE, inboxTtlSeconds: 3600 },
              logger,
            )
          : undefined;
      const hot = new RedisInboxStore(redis, keys, {
        size: INBOX_SIZE,
        ttlSeconds: 3600,
        dedupWindowSeconds: 60,
        ...(behind && { writeBehind: { resume: (owner: string) => archive.head(owner) } }),
      });
      return { inbox: behind ? new ArchivedInboxStore(hot, archive) : hot, persister };
    };

    // Script calls Redis ran, over the whole server: the appends' and the persister's together
    // (the persister's share is the difference between the setups with and without it).
    const scriptCalls = async () => {
      const info = await redis.info("commandstats");
      let calls = 0;
      for (const [, n] of info.matchAll(/^cmdstat_eval(?:sha)?:calls=(\d+)/gm)) calls += Number(n);
      return calls;
    };
    const rows: {
      setup: string;
      perSecond: number;
      latency: Percentiles;
      scriptsPerDm: number;
      /** CPU µs per direct message: this process (appends and persister), Redis, PostgreSQL. */
      cpu: [number, number, number];
    }[] = [];
    const cpuNow = (): [number, number, number] => [
      processCpuSeconds(),
      cpuSeconds(redisServer.child.proc.pid),
      postgres!.cpuSeconds(),
    ];
    const firstContact: Percentiles[] = [];
    const setups = [
      { setup: "redis", behind: false, drain: false },
      { setup: "redis + postgresql", behind: true, drain: true },
      { setup: "write-behind scripts, no persister", behind: true, drain: false },
    ];
    for (let round = 0; round < options.rounds; round++) {
      for (const { setup, behind, drain } of round % 2 === 0 ? setups : [...setups].reverse()) {
        step(`append round ${round + 1}: ${setup}`);
        const { inbox, persister } = store(`a${round}-${setups.findIndex((s) => s.setup === setup)}`, behind, drain);
        persister?.start();
        const first = await sendAll(inbox, { ...options, dms: options.users });
        if (drain) firstContact.push(first.latency);
        const before = await scriptCalls();
        const cpuBefore = cpuNow();
        const sent = await sendAll(inbox, options);
        const cpu = cpuNow().map((c, i) => ((c - cpuBefore[i]!) * 1e6) / options.dms) as [number, number, number];
        rows.push({ setup, ...sent, scriptsPerDm: ((await scriptCalls()) - before) / options.dms, cpu });
        await persister?.stop();
      }
    }

    step(`drain of ${options.drain} entries in ${options.users} inboxes`);
    const drainer = store("drain", true);
    const messages = Math.ceil(options.drain / 2);
    await sendAll(drainer.inbox, { ...options, dms: messages });
    const started = performance.now();
    drainer.persister!.start();
    await drainer.persister!.scan();
    while (drainer.persister!.stats.persisted < messages * 2) await Bun.sleep(5);
    const drainSeconds = (performance.now() - started) / 1000;
    await drainer.persister!.stop();

    step("replays reaching into PostgreSQL");
    const pages: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t = performance.now();
      const page = await drainer.inbox.since(`u${i % options.users}`, 0, undefined, 200);
      pages.push(performance.now() - t);
      if (!page.complete) throw new BenchError(`the replay of u${i % options.users} was not complete`);
    }

    const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
    const ms = (n: number) => n.toFixed(2);
    console.log(`Bun ${Bun.version}, Redis ${redisServer.version}, PostgreSQL ${postgres.version}`);
    console.log(
      `\nappend: ${options.dms} direct messages (two inbox appends each) over ${options.users} users, ${options.concurrency} in flight`,
    );
    console.log(
      "| setup | direct messages/s | p50 ms | p99 ms | Redis script calls per direct message | CPU µs per direct message: bench process / Redis / PostgreSQL |\n| --- | --- | --- | --- | --- | --- |",
    );
    for (const r of rows)
      console.log(
        `| ${r.setup} | ${fmt(r.perSecond)} | ${ms(r.latency.p50)} | ${ms(r.latency.p99)} | ${r.scriptsPerDm.toFixed(2)} | ${r.cpu.map((c) => c.toFixed(0)).join(" / ")} |`,
      );
    const mean = (setup: string) => {
      const list = rows.filter((r) => r.setup === setup).map((r) => r.perSecond);
      return list.reduce((a, b) => a + b, 0) / list.length;
    };
    const ratios = (setup: string) =>
      rows
        .filter((r) => r.setup === setup)
        .map((r, i) => (r.perSecond / rows.filter((x) => x.setup === "redis")[i]!.perSecond).toFixed(2))
        .join(", ");
    for (const setup of ["redis + postgresql", "write-behind scripts, no persister"])
      console.log(
        `ratio ${setup} / redis, per round: ${ratios(setup)} (means ${fmt(mean(setup))} / ${fmt(mean("redis"))})`,
      );
    console.log(
      `first contact with write-behind (${options.users} new inboxes per round): p50 ${firstContact.map((p) => ms(p.p50)).join(", ")} ms, p99 ${firstContact.map((p) => ms(p.p99)).join(", ")} ms`,
    );
    console.log(
      `\ndrain: ${messages * 2} inbox entries in ${options.users} inboxes in ${drainSeconds.toFixed(2)} s: ${fmt((messages * 2) / drainSeconds)} entries/s`,
    );
    const replay = percentiles(pages);
    console.log(
      `replay: a resume from 0 of a drained inbox (~${Math.round((messages * 2) / options.users)} entries, the newest ${INBOX_SIZE} in Redis), p50 ${ms(replay.p50)} ms, p99 ${ms(replay.p99)} ms`,
    );
    redis.disconnect();
    await database.close();
  } finally {
    await postgres?.stop();
    await stopRedis(redisServer);
  }
}

main().catch((error) => {
  console.error(error instanceof BenchError ? `error: ${error.message}` : error);
  process.exit(1);
});
