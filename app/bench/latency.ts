// Latency at a steady rate through one server process, against the baselines in the same run: raw
// Bun.serve + publish (the stack's floor), this server (hot history alone, and on one Redis), and one
// Centrifugo node (memory engine, and Redis engine). The same load (bench/load/hop-latency.ts with one
// port: 32 clients in one room, two senders, 1,000 messages a second) runs against each in turn, the
// order rotated every round, so that every setup meets the machine's other load alike. It says how
// much of the latency through Redis and two instances is already there with one process and no hop.
//
// Usage: bun bench/latency.ts [--rounds N] [--duration MS] [--rate N] [--setups a,b] [--json FILE]

import { join } from "node:path";
import { centrifugoBinary, startCentrifugo } from "./lib/centrifugo";
import { BenchError, type Child, freePort, spawnChild, stopChild, waitHealthy } from "./lib/processes";
import { type RedisServer, startRedis, stopRedis } from "./lib/redis-server";
import { APP_DIR, chatCommand, chatDescription, targets } from "./lib/targets";
import type { HopLatencyOptions, HopLatencyResult } from "./load/hop-latency";

interface Setup {
  id: string;
  label: string;
  redis: boolean;
}

const SETUPS: Setup[] = [
  { id: "raw-bun", label: "raw Bun.serve + publish", redis: false },
  { id: "chat", label: "this server, hot history alone", redis: false },
  { id: "chat-redis", label: "this server, one Redis", redis: true },
  { id: "centrifugo", label: "Centrifugo, memory engine", redis: false },
  { id: "centrifugo-redis", label: "Centrifugo, Redis engine", redis: true },
];

interface Options {
  rounds: number;
  durationMs: number;
  warmupMs: number;
  rate: number;
  clients: number;
  setups: Setup[];
  /** Run the Bun servers with JavaScriptCore's GC log and report their collections. */
  gcLog: boolean;
  json?: string;
}

function parseOptions(argv: string[]): Options {
  const options: Options = {
    rounds: 3,
    durationMs: 8000,
    warmupMs: 2000,
    rate: 1000,
    clients: 32,
    setups: SETUPS,
    gcLog: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new BenchError(`${flag} needs a value`);
      return v;
    };
    const count = (min: number) => {
      const n = Number(value());
      if (!Number.isInteger(n) || n < min) throw new BenchError(`${flag} must be an integer of at least ${min}`);
      return n;
    };
    if (flag === "--rounds") options.rounds = count(1);
    else if (flag === "--duration") options.durationMs = count(1000);
    else if (flag === "--rate") options.rate = count(2);
    else if (flag === "--clients") options.clients = count(3);
    else if (flag === "--json") options.json = value();
    else if (flag === "--gc-log") options.gcLog = true;
    else if (flag === "--setups") {
      const ids = value().split(",");
      const unknown = ids.filter((id) => !SETUPS.some((s) => s.id === id));
      if (unknown.length > 0)
        throw new BenchError(`unknown setup ${unknown.join(", ")}; known: ${SETUPS.map((s) => s.id).join(", ")}`);
      options.setups = SETUPS.filter((s) => ids.includes(s.id));
    } else if (flag === "--help" || flag === "-h") {
      process.stdout.write(
        `Usage: bun bench/latency.ts [options]\n` +
          `  --rounds N      rounds, each running every setup once in a rotated order (default 3)\n` +
          `  --duration MS   measured interval per setup and round (default 8000, after 2000 of warm-up)\n` +
          `  --rate N        messages per second into the room, two senders together (default 1000)\n` +
          `  --clients N     members of the room, all on the one server (default 32)\n` +
          `  --setups LIST   of ${SETUPS.map((s) => s.id).join(", ")} (default all)\n` +
          `  --gc-log        run the Bun servers with BUN_JSC_logGC=1 and report their collections per second\n` +
          `  --json FILE     also write every result as JSON\n`,
      );
      process.exit(0);
    } else throw new BenchError(`unknown option ${flag} (--help lists them)`);
  }
  return options;
}

interface Server {
  name: string;
  child: Child;
  port: number;
  pathPrefix: string;
  pathSuffix?: string;
  protocol?: "chat" | "centrifugo";
  /** Young-generation collections and their pauses, counted while `gc.counting` (with --gc-log). */
  gc: GcCount;
}

/** JavaScriptCore's GC log (BUN_JSC_logGC=1) prints one line per collection with its pause, `p=<ms>ms`. */
class GcCount {
  counting = false;
  eden = 0;
  full = 0;
  pauseMs = 0;
  maxPauseMs = 0;

  readonly onLine = (line: string) => {
    if (!this.counting) return;
    const kind = /=> (EdenCollection|FullCollection)/.exec(line)?.[1];
    const pause = /, p=([0-9.]+)ms/.exec(line)?.[1];
    if (!kind || pause === undefined) return;
    if (kind === "EdenCollection") this.eden++;
    else this.full++;
    this.pauseMs += Number(pause);
    this.maxPauseMs = Math.max(this.maxPauseMs, Number(pause));
  };
}

async function start(
  setup: Setup,
  redis: RedisServer | undefined,
  centrifugo: string | undefined,
  gcLog: boolean,
): Promise<Server> {
  const port = freePort();
  const gc = new GcCount();
  const logGc: Record<string, string> = gcLog ? { BUN_JSC_logGC: "1" } : {};
  if (setup.id === "raw-bun") {
    const { cmd, env } = targets()
      .find((t) => t.id === "raw-bun")!
      .command(port);
    const child = spawnChild("raw-bun", cmd, { cwd: APP_DIR, env: { ...env, ...logGc }, onStderrLine: gc.onLine });
    await waitHealthy(child, port, 20_000);
    return { name: "raw-bun", child, port, pathPrefix: "/ws/bench", gc };
  }
  if (setup.id.startsWith("centrifugo")) {
    const [node] = await startCentrifugo(centrifugo!, 1, setup.redis ? redis : undefined);
    return { ...node!, pathPrefix: "/connection/websocket?bench=", protocol: "centrifugo", gc };
  }
  const redisEnv: Record<string, string> = setup.redis
    ? { REDIS_URL: redis!.url, REDIS_REQUIRED: "true", REDIS_KEY_PREFIX: `latency${process.hrtime()[1]}:` }
    : {};
  const { cmd, env } = chatCommand(port, {
    INSTANCE_ID: "bench-latency",
    MAX_CONNECTIONS_PER_USER: "100000",
    ...redisEnv,
  });
  const child = spawnChild("chat", cmd, { cwd: APP_DIR, env: { ...env, ...logGc }, onStderrLine: gc.onLine });
  await waitHealthy(child, port, 20_000, "/health/ready");
  return { name: "chat", child, port, pathPrefix: "/ws/chat/latency", pathSuffix: "?batch=1", gc };
}

interface Measured extends HopLatencyResult {
  /** The server's collections per second of the load run (set-up and warm-up included), with --gc-log. */
  gc?: { edenPerSecond: number; fullPerSecond: number; meanPauseMs: number; maxPauseMs: number };
}

async function measure(server: Server, redis: RedisServer | undefined, options: Options): Promise<Measured> {
  const load: HopLatencyOptions = {
    ports: [server.port],
    pathPrefix: server.pathPrefix,
    pathSuffix: server.pathSuffix,
    protocol: server.protocol,
    clients: options.clients,
    senders: 2,
    rate: options.rate,
    warmupMs: options.warmupMs,
    durationMs: options.durationMs,
    drainMs: 5000,
    processes: [
      { name: "server", pid: server.child.proc.pid },
      ...(redis ? [{ name: "redis", pid: redis.child.proc.pid }] : []),
    ],
    room: "latency",
  };
  server.gc.counting = true;
  const startedAt = performance.now();
  const generator = spawnChild(
    "latency load",
    [process.execPath, join(import.meta.dir, "load", "hop-latency.ts"), JSON.stringify(load)],
    {
      cwd: APP_DIR,
    },
  );
  const line = await generator.nextLine(options.warmupMs + options.durationMs + 30_000, "measuring latency");
  await generator.proc.exited;
  server.gc.counting = false;
  const seconds = (performance.now() - startedAt) / 1000;
  const result: Measured = JSON.parse(line);
  const { eden, full, pauseMs, maxPauseMs } = server.gc;
  if (options.gcLog && eden + full > 0)
    result.gc = {
      edenPerSecond: eden / seconds,
      fullPerSecond: full / seconds,
      meanPauseMs: pauseMs / (eden + full),
      maxPauseMs,
    };
  return result;
}

function printTable(rows: string[][]) {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const r of rows)
    process.stdout.write(
      `| ${r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join(" | ")} |\n`,
    );
}

const fmt = (n: number, digits = 2) =>
  n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

async function main() {
  const options = parseOptions(process.argv.slice(2));
  const needsCentrifugo = options.setups.some((s) => s.id.startsWith("centrifugo"));
  let centrifugo: string | undefined;
  if (needsCentrifugo) {
    const found = await centrifugoBinary();
    if ("skipped" in found) {
      process.stderr.write(`Centrifugo left out: ${found.skipped}\n`);
      options.setups = options.setups.filter((s) => !s.id.startsWith("centrifugo"));
    } else centrifugo = found.path;
  }
  const redis = options.setups.some((s) => s.redis) ? await startRedis() : undefined;
  process.stdout.write(
    `latency at ${options.rate} messages/s into a room of ${options.clients} on one server process, ` +
      `${options.rounds} rounds of ${options.durationMs} ms; this server: ${chatDescription()}\n`,
  );
  const results = new Map<string, Measured[]>(options.setups.map((s) => [s.id, []]));
  try {
    for (let round = 0; round < options.rounds; round++) {
      const order = options.setups.map((_, k) => options.setups[(k + round) % options.setups.length]!);
      for (const setup of order) {
        process.stderr.write(`round ${round + 1}: ${setup.label}\n`);
        const server = await start(setup, redis, centrifugo, options.gcLog);
        try {
          const result = await measure(server, setup.redis ? redis : undefined, options);
          if (result.missing > 0) throw new BenchError(`${setup.label}: ${result.missing} receipts missing`);
          results.get(setup.id)!.push(result);
        } finally {
          await stopChild(server.child);
        }
      }
    }
  } finally {
    if (redis) await stopRedis(redis);
  }
  const rows = [
    [
      "setup",
      "round",
      "p50 (ms)",
      "p90",
      "p99",
      "max",
      "server CPU",
      "load CPU",
      "worst tick gap (ms)",
      ...(options.gcLog ? ["GCs/s", "mean / max GC pause (ms)"] : []),
    ],
  ];
  for (const setup of options.setups) {
    results.get(setup.id)!.forEach((r, round) => {
      rows.push([
        setup.label,
        String(round + 1),
        fmt(r.same.p50),
        fmt(r.same.p90),
        fmt(r.same.p99),
        fmt(r.same.max),
        `${fmt(r.cpu.server! * 100, 0)}%`,
        `${fmt(r.loadCpu * 100, 0)}%`,
        fmt(r.worstTickGapMs, 1),
        ...(options.gcLog
          ? r.gc
            ? [fmt(r.gc.edenPerSecond + r.gc.fullPerSecond, 1), `${fmt(r.gc.meanPauseMs)} / ${fmt(r.gc.maxPauseMs)}`]
            : ["-", "-"]
          : []),
      ]);
    });
  }
  printTable(rows);
  // Ratios of p99 within each round (the setups of a round ran minutes apart at most), then their range.
  const pairs: [string, string, string][] = [
    ["chat", "raw-bun", "this server (hot history) / raw Bun"],
    ["chat", "centrifugo", "this server (hot history) / Centrifugo (memory)"],
    ["chat-redis", "centrifugo-redis", "this server (Redis) / Centrifugo (Redis)"],
  ];
  const ratioRows = [["p99 ratio, per round", ...Array.from({ length: options.rounds }, (_, k) => `round ${k + 1}`)]];
  for (const [a, b, label] of pairs) {
    const ra = results.get(a);
    const rb = results.get(b);
    if (!ra || !rb) continue;
    ratioRows.push([label, ...ra.map((r, k) => fmt(r.same.p99 / rb[k]!.same.p99))]);
  }
  if (ratioRows.length > 1) {
    process.stdout.write("\n");
    printTable(ratioRows);
  }
  if (options.json) await Bun.write(options.json, JSON.stringify(Object.fromEntries(results), null, 2));
}

main().catch((error) => {
  process.stderr.write(`${error instanceof BenchError ? error.message : (error?.stack ?? error)}\n`);
  process.exit(error instanceof BenchError ? 2 : 1);
});
