// Scale-out benchmark: two instances of this server sharing one Redis, against raw Bun.serve in one
// process, measured in the same run by load generators in separate processes:
//   broadcast  room message frames delivered per second, N clients in one room taking turns to
//              send; for two instances half the clients (and so half the senders) are on each
//   database   the same two instances writing every message behind into PostgreSQL, against them
//              without it; and the persister's drain rate and persistence lag (bench/lib/write-behind.ts)
//   hop        at a steady rate into one room (one paced sender per instance), the latency from send
//              to receipt for members on the sender's instance and on the other one, and the hop
//              (other - same) that Redis pub/sub and the second instance add
// Centrifugo (the pinned release, bench/lib/centrifugo.ts: two nodes on the same Redis, history and
// recovery on) runs the same broadcast and hop loads in its own JSON protocol, as a baseline in the
// same run; without it (no binary and no Go to build one) the run says so and goes on.
// The run starts its own redis-server on a free loopback port (temporary directory, no persistence),
// and PostgreSQL likewise (bench/lib/postgres-server.ts) for the database figures.
// Prints tables with the goals. A benchmark measures; it never fails on a figure.
//
// Usage: bun run bench:redis [options]   (from app/; see usage() below)

import { join } from "node:path";
import Redis from "ioredis";
import { type CentrifugoNode, centrifugoBinary, startCentrifugo } from "./lib/centrifugo";
import { cpuSeconds } from "./lib/cpu";
import { type PostgresServer, startPostgres } from "./lib/postgres-server";
import { BenchError, type Child, freePort, indent, spawnChild, stopChild, waitHealthy } from "./lib/processes";
import { type RedisServer, startRedis, stopRedis } from "./lib/redis-server";
import type { Percentiles } from "./lib/stats";
import { APP_DIR, chatCommand, chatDescription, targets } from "./lib/targets";
import { measureWriteBehind, type WriteBehindResult } from "./lib/write-behind";
import type { BroadcastOptions, BroadcastResult } from "./load/broadcast";
import type { HopLatencyOptions, HopLatencyResult } from "./load/hop-latency";
import type { PubSubLatencyOptions, PubSubLatencyResult } from "./load/pubsub-latency";
import { runShards, SHARDS_DEFAULTS } from "./shards";

const GOAL_RATIO = 0.5;
const GOAL_HOP_P99_MS = 0.6;
const GOAL_END_TO_END_P99_MS = 1.7;
const GOAL_DATABASE_RATIO = 0.9;
const GOAL_DRAIN_PER_SECOND = 20_000;
const GOAL_PERSIST_P99_MS = 1000;
/** Bytes of a backplane envelope carrying one room message of the latency run. */
const ENVELOPE_BYTES = 400;

interface Setup {
  id:
    | "raw-bun"
    | "chat-memory"
    | "chat-redis"
    | "chat-2x-redis"
    | "chat-2x-redis-pg"
    | "chat-2x-one-side"
    | "centrifugo-2x-redis";
  label: string;
  instances: number;
  redis: boolean;
  /** Messages written behind into PostgreSQL (DATABASE_URL). */
  database?: boolean;
  /** Only the clients of the first instance send (a diagnostic, run only when asked). */
  oneSide?: boolean;
  diagnostic?: boolean;
  /** Centrifugo nodes, not this server. */
  centrifugo?: boolean;
}

const SETUPS: Setup[] = [
  { id: "raw-bun", label: "raw Bun.serve + publish, 1 process", instances: 1, redis: false },
  { id: "chat-memory", label: "this server, 1 instance, no Redis", instances: 1, redis: false },
  { id: "chat-redis", label: "this server, 1 instance + Redis", instances: 1, redis: true },
  { id: "chat-2x-redis", label: "this server, 2 instances + Redis", instances: 2, redis: true },
  {
    id: "chat-2x-redis-pg",
    label: "this server, 2 instances + Redis + PostgreSQL",
    instances: 2,
    redis: true,
    database: true,
  },
  {
    id: "centrifugo-2x-redis",
    label: "Centrifugo, 2 nodes + Redis",
    instances: 2,
    redis: true,
    centrifugo: true,
  },
  {
    id: "chat-2x-one-side",
    label: "2 instances + Redis, senders on one",
    instances: 2,
    redis: true,
    oneSide: true,
    diagnostic: true,
  },
];

interface Options {
  setups: Setup[];
  clients: number;
  window: number;
  warmupMs: number;
  durationMs: number;
  rate: number;
  senders: number;
  latencyClients: number;
  latencyWarmupMs: number;
  latencyDurationMs: number;
  skipBroadcast: boolean;
  skipLatency: boolean;
  skipWriteBehind: boolean;
  drainMessages: number;
  json: string | undefined;
  shards: boolean;
  skipCentrifugo: boolean;
}

function usage(): string {
  return `usage: bun run bench:redis [options]

  --setups LIST          broadcast setups, comma-separated (default: raw-bun,chat-memory,chat-redis,chat-2x-redis,
                         chat-2x-redis-pg,centrifugo-2x-redis);
                         the diagnostic chat-2x-one-side is chat-2x-redis with only the clients of the
                         first instance sending
  --clients N            clients in the broadcast room, split evenly over the instances (default 32)
  --window N             broadcast messages in flight: sent, not yet received by every client (default 512)
  --warmup MS            broadcast warm-up before measuring (default 1000)
  --duration MS          measured broadcast interval (default 5000)
  --rate N               hop latency: messages per second into the room, all senders together (default 1000)
  --senders N            hop latency: paced senders, alternating between the instances (default 2)
  --latency-clients N    hop latency: members of the room, split evenly over the instances (default 32)
  --latency-warmup MS    hop latency warm-up before measuring (default 2000)
  --latency-duration MS  measured hop latency interval (default 10000)
  --skip-broadcast       only the hop latency
  --skip-latency         no hop latency
  --skip-write-behind    no drain rate and persistence lag of the write-behind into PostgreSQL
  --drain-messages N     write-behind: messages in the backlog the persister drains (default 100000);
                         the persistence lag is measured at --rate messages/s for --latency-duration
  --skip-centrifugo      no Centrifugo baseline (broadcast and hop latency)
  --json FILE            also write the results as JSON
  --shards               instead: the shards comparison (bench/shards.ts), one Redis against a 3-master
                         Redis Cluster, 600 clients in 300 rooms
  -h, --help             this text`;
}

function usageError(message: string): never {
  console.error(`${message}\n\n${usage()}`);
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const options: Options = {
    setups: SETUPS.filter((s) => !s.diagnostic),
    clients: 32,
    window: 512,
    warmupMs: 1000,
    durationMs: 5000,
    rate: 1000,
    senders: 2,
    latencyClients: 32,
    latencyWarmupMs: 2000,
    latencyDurationMs: 10_000,
    skipBroadcast: false,
    skipLatency: false,
    skipWriteBehind: false,
    drainMessages: 100_000,
    json: undefined,
    shards: false,
    skipCentrifugo: false,
  };
  const positive = (name: string, value: string | undefined) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) usageError(`${name} needs a positive integer, got ${value ?? "nothing"}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    switch (arg) {
      case "--setups": {
        const ids = (argv[++i] ?? "").split(",").filter(Boolean);
        const chosen = ids.map((id) => SETUPS.find((s) => s.id === id));
        if (ids.length === 0 || chosen.some((s) => !s))
          usageError(`--setups takes a list of ${SETUPS.map((s) => s.id).join(", ")}`);
        options.setups = chosen as Setup[];
        break;
      }
      case "--clients":
        options.clients = positive(arg, argv[++i]);
        break;
      case "--window":
        options.window = positive(arg, argv[++i]);
        break;
      case "--warmup":
        options.warmupMs = positive(arg, argv[++i]);
        break;
      case "--duration":
        options.durationMs = positive(arg, argv[++i]);
        break;
      case "--rate":
        options.rate = positive(arg, argv[++i]);
        break;
      case "--senders":
        options.senders = positive(arg, argv[++i]);
        break;
      case "--latency-clients":
        options.latencyClients = positive(arg, argv[++i]);
        break;
      case "--latency-warmup":
        options.latencyWarmupMs = positive(arg, argv[++i]);
        break;
      case "--latency-duration":
        options.latencyDurationMs = positive(arg, argv[++i]);
        break;
      case "--skip-broadcast":
        options.skipBroadcast = true;
        break;
      case "--skip-latency":
        options.skipLatency = true;
        break;
      case "--skip-write-behind":
        options.skipWriteBehind = true;
        break;
      case "--drain-messages":
        options.drainMessages = positive(arg, argv[++i]);
        break;
      case "--json":
        options.json = argv[++i] ?? usageError("--json needs a file name");
        break;
      case "--shards":
        options.shards = true;
        break;
      case "--skip-centrifugo":
        options.skipCentrifugo = true;
        break;
      case "-h":
      case "--help":
        console.log(usage());
        return process.exit(0);
      default:
        usageError(`unknown argument ${arg}`);
    }
  }
  if (options.clients < 2 || options.latencyClients < 2)
    usageError("--clients and --latency-clients need at least 2 (one per instance)");
  if (options.senders > options.latencyClients) usageError("--senders cannot exceed --latency-clients");
  if (options.skipCentrifugo) options.setups = options.setups.filter((s) => !s.centrifugo);
  return options;
}

// ---- servers -------------------------------------------------------------------------------------

interface Server {
  name: string;
  child: Child;
  port: number;
}

function step(message: string) {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${message}\n`);
}

/** Each setup starts fresh servers; each Redis-backed setup gets its own key prefix. */
let setups = 0;

async function startRawBun(): Promise<Server[]> {
  const port = freePort();
  const { cmd, env } = targets()
    .find((t) => t.id === "raw-bun")!
    .command(port);
  const child = spawnChild("raw-bun", cmd, { cwd: APP_DIR, env });
  await waitHealthy(child, port, 20_000);
  return [{ name: "raw-bun", child, port }];
}

/** `count` chat instances; with Redis they share one key prefix and act as one chat server. */
async function startChat(count: number, redis: RedisServer | undefined, databaseUrl?: string): Promise<Server[]> {
  const prefix = `bench${++setups}:`;
  const servers: Server[] = [];
  try {
    for (let k = 0; k < count; k++) {
      const port = freePort();
      const name = count === 1 ? "chat" : `chat-${"ab"[k]}`;
      const redisEnv: Record<string, string> = redis
        ? { REDIS_URL: redis.url, REDIS_REQUIRED: "true", REDIS_KEY_PREFIX: prefix }
        : {};
      if (databaseUrl) redisEnv.DATABASE_URL = databaseUrl;
      const { cmd, env } = chatCommand(port, {
        INSTANCE_ID: `bench-${name}`,
        MAX_CONNECTIONS_PER_USER: "100000",
        ...redisEnv,
      });
      const child = spawnChild(name, cmd, { cwd: APP_DIR, env });
      servers.push({ name, child, port });
    }
    // /health/ready answers 200 only once Redis is connected (REDIS_REQUIRED): before that an
    // instance would serve from its in-memory fallback stores.
    await Promise.all(servers.map((s) => waitHealthy(s.child, s.port, 20_000, "/health/ready")));
    return servers;
  } catch (error) {
    await Promise.all(servers.map((s) => stopChild(s.child)));
    throw error;
  }
}

async function stopServers(servers: Server[]) {
  await Promise.all(servers.map((s) => stopChild(s.child)));
}

function ensureAlive(servers: Server[], what: string) {
  for (const s of servers) {
    if (s.child.proc.exitCode !== null || s.child.proc.signalCode !== null) {
      throw new BenchError(`${s.name} exited during ${what}:\n${indent(s.child.tail())}`);
    }
  }
}

interface BackplaneCounters {
  gapMessages: number;
  dropped: number;
  /** Redis failures by operation, e.g. "connection=1". */
  errors: string;
  /** Envelopes received from the other instance, and how many within 5 ms and after 100 ms (ms clock). */
  received: number;
  lagWithin5ms: number;
  lagOver100ms: number;
}

/** Counters of the backplane from an instance's /metrics (loopback needs no token). */
async function backplaneCounters(server: Server): Promise<BackplaneCounters> {
  const text = await (
    await fetch(`http://127.0.0.1:${server.port}/metrics`, { signal: AbortSignal.timeout(2000) })
  ).text();
  const sum = (name: string) =>
    text
      .split("\n")
      .filter((line) => line.startsWith(name) && (line[name.length] === " " || line[name.length] === "{"))
      .reduce((n, line) => n + Number(line.slice(line.lastIndexOf(" ") + 1)), 0);
  const bucket = (le: string) => sum(`backplane_lag_seconds_bucket{le="${le}"}`);
  const errors = [...text.matchAll(/^backplane_errors_total\{op="([^"]+)"\} (\S+)$/gm)].map((m) => `${m[1]}=${m[2]}`);
  const received = sum("backplane_lag_seconds_count");
  return {
    gapMessages: sum("backplane_gap_messages_total"),
    dropped: sum("backplane_dropped_total"),
    errors: errors.join(",") || "none",
    received,
    lagWithin5ms: bucket("0.005"),
    lagOver100ms: received - bucket("0.1"),
  };
}

/** Commands run inside the history scripts (src/history/redis.ts). */
/** Commands the history scripts run: counted on their own and again inside the EVAL's time. */
const SCRIPT_COMMANDS = new Set(["hget", "hset", "hincrby", "xadd", "expire", "del", "get", "set", "publish"]);

interface CommandStat {
  command: string;
  calls: number;
  usec: number;
}

/** Redis's own count and CPU time per command since the last reset (INFO commandstats). */
async function commandStats(redis: RedisServer, reset: boolean): Promise<CommandStat[]> {
  const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    if (reset) {
      await client.config("RESETSTAT");
      return [];
    }
    const info = await client.info("commandstats");
    return [...info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)]
      .map((m) => ({ command: m[1]!, calls: Number(m[2]), usec: Number(m[3]) }))
      .filter((c) => !["config", "info", "client", "subscribe", "ping", "select"].includes(c.command))
      .sort((a, b) => b.usec - a.usec);
  } finally {
    client.disconnect();
  }
}

async function runLoad<T>(name: string, script: string, load: object, timeoutMs: number, what: string): Promise<T> {
  const generator = spawnChild(name, [process.execPath, join(import.meta.dir, "load", script), JSON.stringify(load)], {
    cwd: APP_DIR,
  });
  const line = await generator.nextLine(timeoutMs, what);
  await generator.proc.exited;
  return JSON.parse(line) as T;
}

// ---- measurements --------------------------------------------------------------------------------

interface BroadcastRow {
  setup: Setup;
  result: BroadcastResult;
  servers: string[];
  /** PostgreSQL's CPU over the whole load run (start-up, warm-up and measured interval), in shares of one core. */
  databaseCpu?: number;
  /** Redis commands over the whole load run (set-up, warm-up and measured interval). */
  commands?: CommandStat[];
  counters?: BackplaneCounters[];
}

async function measureBroadcast(
  setup: Setup,
  redis: RedisServer,
  options: Options,
  postgres: PostgresServer | undefined,
  centrifugo: string | undefined,
): Promise<BroadcastRow> {
  const servers = setup.centrifugo
    ? await startCentrifugo(centrifugo!, setup.instances, redis)
    : setup.id === "raw-bun"
      ? await startRawBun()
      : await startChat(setup.instances, setup.redis ? redis : undefined, setup.database ? postgres?.url : undefined);
  try {
    const processes = servers.map((s) => ({ name: s.name, pid: s.child.proc.pid }));
    if (setup.redis) processes.push({ name: "redis", pid: redis.child.proc.pid });
    const load: BroadcastOptions = {
      ports: servers.map((s) => s.port),
      ...(setup.centrifugo
        ? { pathPrefix: "/connection/websocket?bench=", protocol: "centrifugo" as const }
        : {
            pathPrefix: setup.id === "raw-bun" ? "/ws/bench" : "/ws/chat/bench",
            // The chat server's clients ask for batched frames, as its client library does by default.
            pathSuffix: setup.id === "raw-bun" ? "" : "?batch=1",
          }),
      clients: options.clients,
      window: options.window,
      warmupMs: options.warmupMs,
      durationMs: options.durationMs,
      processes,
      room: "bench",
      senderPorts: setup.oneSide ? 1 : undefined,
    };
    if (setup.redis) await commandStats(redis, true);
    const database = setup.database && postgres ? { cpu: postgres.cpuSeconds(), at: performance.now() } : undefined;
    const result = await runLoad<BroadcastResult>(
      `${setup.id} broadcast load`,
      "broadcast.ts",
      load,
      options.warmupMs + options.durationMs + 30_000,
      "measuring broadcast",
    );
    ensureAlive(servers, "the broadcast run");
    const counters =
      setup.instances > 1 && !setup.centrifugo ? await Promise.all(servers.map(backplaneCounters)) : undefined;
    const commands = setup.redis ? await commandStats(redis, false) : undefined;
    const databaseCpu =
      database && postgres
        ? (postgres.cpuSeconds() - database.cpu) / ((performance.now() - database.at) / 1000)
        : undefined;
    return { setup, result, servers: servers.map((s) => s.name), counters, commands, databaseCpu };
  } finally {
    await stopServers(servers);
  }
}

interface LatencyRun {
  result: HopLatencyResult;
  pubsub: PubSubLatencyResult;
  counters: BackplaneCounters[];
  /** The same load through two Centrifugo nodes, when it ran. */
  centrifugo?: HopLatencyResult;
}

/** The hop latency load (bench/load/hop-latency.ts) against `servers` on the run's Redis. */
function runHopLatency(
  name: string,
  progress: string,
  path: Pick<HopLatencyOptions, "pathPrefix" | "pathSuffix" | "protocol">,
  servers: { name: string; port: number; child: Child }[],
  redis: RedisServer,
  options: Options,
): Promise<HopLatencyResult> {
  const load: HopLatencyOptions = {
    ports: servers.map((s) => s.port),
    ...path,
    clients: options.latencyClients,
    senders: options.senders,
    rate: options.rate,
    warmupMs: options.latencyWarmupMs,
    durationMs: options.latencyDurationMs,
    drainMs: 5000,
    processes: [
      ...servers.map((s) => ({ name: s.name, pid: s.child.proc.pid })),
      { name: "redis", pid: redis.child.proc.pid },
    ],
    room: "hop",
  };
  const timeout = options.latencyWarmupMs + options.latencyDurationMs + 30_000;
  return runLoad<HopLatencyResult>(name, "hop-latency.ts", load, timeout, progress);
}

/** The hop latency load against two nodes of Centrifugo on the run's Redis. */
async function measureCentrifugoLatency(binary: string, redis: RedisServer, options: Options) {
  const nodes: CentrifugoNode[] = await startCentrifugo(binary, 2, redis);
  try {
    const result = await runHopLatency(
      "centrifugo hop latency load",
      "measuring Centrifugo hop latency",
      { pathPrefix: "/connection/websocket?bench=", protocol: "centrifugo" },
      nodes,
      redis,
      options,
    );
    ensureAlive(nodes, "the Centrifugo latency run");
    return result;
  } finally {
    await stopServers(nodes);
  }
}

async function measureLatency(
  redis: RedisServer,
  options: Options,
  centrifugo: string | undefined,
): Promise<LatencyRun> {
  const floor: PubSubLatencyOptions = {
    url: redis.url,
    channel: "bench-pubsub",
    rate: options.rate,
    warmupMs: options.latencyWarmupMs,
    durationMs: options.latencyDurationMs,
    payloadBytes: ENVELOPE_BYTES,
  };
  const pubsub = await runLoad<PubSubLatencyResult>(
    "pub/sub latency load",
    "pubsub-latency.ts",
    floor,
    floor.warmupMs + floor.durationMs + 30_000,
    "measuring pub/sub latency",
  );
  const servers = await startChat(2, redis);
  try {
    const result = await runHopLatency(
      "hop latency load",
      "measuring hop latency",
      { pathPrefix: "/ws/chat/hopbench", pathSuffix: "?batch=1" },
      servers,
      redis,
      options,
    );
    ensureAlive(servers, "the latency run");
    const counters = await Promise.all(servers.map(backplaneCounters));
    await stopServers(servers);
    return {
      result,
      pubsub,
      counters,
      centrifugo: centrifugo ? await measureCentrifugoLatency(centrifugo, redis, options) : undefined,
    };
  } finally {
    await stopServers(servers);
  }
}

// ---- report --------------------------------------------------------------------------------------

const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const pct = (share: number) => `${fmt(share * 100)}%`;

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) =>
    `| ${r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join(" | ")} |`;
  const rule = `|${widths.map((w, c) => (c === 0 ? `:${"-".repeat(w + 1)}` : `${"-".repeat(w + 1)}:`)).join("|")}|`;
  return [line(rows[0]!), rule, ...rows.slice(1).map(line)].join("\n");
}

function describeCounters(name: string, c: BackplaneCounters): string {
  const share = (n: number) => (c.received > 0 ? `${fmt((100 * n) / c.received, 1)}%` : "-");
  return (
    `${name} received ${fmt(c.received)} envelopes (lag <= 5 ms: ${share(c.lagWithin5ms)}, > 100 ms: ${share(c.lagOver100ms)}), ` +
    `${fmt(c.gapMessages)} messages filled from history, ${fmt(c.dropped)} dropped, errors: ${c.errors}`
  );
}

/** CPU of the server processes (all instances) and of Redis, in shares of one core. */
function cpuSplit(row: BroadcastRow) {
  let servers = 0;
  for (const name of row.servers) servers += row.result.cpu[name] ?? 0;
  return { servers, redis: row.result.cpu.redis ?? 0 };
}

function report(
  broadcast: BroadcastRow[],
  latency: LatencyRun | undefined,
  writeBehind: WriteBehindResult | undefined,
  options: Options,
  environment: string[],
) {
  const out: string[] = ["", ...environment, ""];
  const raw = broadcast.find((r) => r.setup.id === "raw-bun");
  if (broadcast.length > 0) {
    const rows: string[][] = [
      [
        "setup",
        "deliveries/s",
        "/ raw Bun",
        "server CPU",
        "Redis CPU",
        "load CPU",
        "CPU µs/delivery",
        "/ raw Bun per CPU s",
        "frame B",
        "deliveries/WS frame",
      ],
    ];
    for (const row of broadcast) {
      const b = row.result;
      const { servers, redis } = cpuSplit(row);
      const perDelivery = (servers + redis) / b.deliveriesPerSecond;
      const rawPerDelivery = raw ? cpuSplit(raw).servers / raw.result.deliveriesPerSecond : NaN;
      rows.push([
        row.setup.label,
        fmt(b.deliveriesPerSecond),
        raw ? fmt(b.deliveriesPerSecond / raw.result.deliveriesPerSecond, 2) : "-",
        row.servers.length > 1 ? `${row.servers.map((n) => pct(b.cpu[n] ?? 0)).join(" + ")}` : pct(servers),
        row.setup.redis ? pct(redis) : "-",
        pct(b.loadCpu),
        fmt(perDelivery * 1e6, 2),
        raw ? fmt(rawPerDelivery / perDelivery, 2) : "-",
        fmt(b.frameBytes),
        fmt(b.deliveriesPerFrame, 1),
      ]);
    }
    out.push(`Broadcast, ${options.clients} clients in one room:`, "", table(rows), "");
    const two = broadcast.find((r) => r.setup.id === "chat-2x-redis");
    if (raw && two) {
      const ratio = two.result.deliveriesPerSecond / raw.result.deliveriesPerSecond;
      out.push(
        `2 instances + Redis / raw Bun (1 process), deliveries per second: ${fmt(ratio, 2)} (goal >= ${GOAL_RATIO}: ${ratio >= GOAL_RATIO ? "met" : "MISSED"})`,
      );
    }
    const withDatabase = broadcast.find((r) => r.setup.id === "chat-2x-redis-pg");
    if (two && withDatabase) {
      const ratio = withDatabase.result.deliveriesPerSecond / two.result.deliveriesPerSecond;
      out.push(
        `2 instances + Redis + PostgreSQL / 2 instances + Redis, deliveries per second: ${fmt(ratio, 2)} (goal >= ${GOAL_DATABASE_RATIO}: ${ratio >= GOAL_DATABASE_RATIO ? "met" : "MISSED"})`,
      );
      // Where the difference goes: CPU per message sent (a delivery times the room's size).
      const perMessage = (row: BroadcastRow) => {
        const { servers, redis } = cpuSplit(row);
        const messages = row.result.deliveriesPerSecond / options.clients;
        return { servers: (servers / messages) * 1e6, redis: (redis / messages) * 1e6 };
      };
      const [a, b] = [perMessage(two), perMessage(withDatabase)];
      out.push(
        `CPU µs per message without / with PostgreSQL: instances ${fmt(a.servers, 1)} / ${fmt(b.servers, 1)}, Redis ${fmt(a.redis, 1)} / ${fmt(b.redis, 1)}; PostgreSQL used ${pct(withDatabase.databaseCpu ?? 0)} of a core over the load run`,
      );
    }
    const peer = broadcast.find((r) => r.setup.id === "centrifugo-2x-redis");
    if (two && peer) {
      const perDelivery = (row: BroadcastRow) => {
        const { servers, redis } = cpuSplit(row);
        return (servers + redis) / row.result.deliveriesPerSecond;
      };
      out.push(
        `2 instances + Redis / Centrifugo 2 nodes + Redis: deliveries per second ${fmt(two.result.deliveriesPerSecond / peer.result.deliveriesPerSecond, 2)}, ` +
          `CPU µs per delivery ${fmt(perDelivery(two) / perDelivery(peer), 2)} (below 1: cheaper), ` +
          `deliveries per WebSocket frame ${fmt(two.result.deliveriesPerFrame, 1)} against ${fmt(peer.result.deliveriesPerFrame, 1)}`,
      );
    }
    const one = broadcast.find((r) => r.setup.id === "chat-memory");
    if (raw && one)
      out.push(
        `1 instance, no Redis / raw Bun, deliveries per second: ${fmt(one.result.deliveriesPerSecond / raw.result.deliveriesPerSecond, 2)} (context)`,
      );
    for (const row of broadcast) {
      if (!row.counters) continue;
      out.push(
        `backplane during ${row.setup.id}: ${row.counters.map((c, k) => describeCounters(row.servers[k]!, c)).join("; ")}`,
      );
    }
    for (const row of broadcast) {
      if (!row.commands) continue;
      // Messages stored over the whole load run: the append script runs one HINCRBY per message
      // (one script call stores a batch of them).
      const messages = row.commands.find((c) => c.command === "hincrby")?.calls ?? 0;
      if (messages === 0) continue;
      const topLevel = row.commands.filter((c) => !SCRIPT_COMMANDS.has(c.command));
      const inside = row.commands.filter((c) => SCRIPT_COMMANDS.has(c.command));
      const describe = (list: CommandStat[]) =>
        list.slice(0, 6).map((c) => `${c.command} ${fmt(c.calls / messages, 2)} x ${fmt(c.usec / c.calls, 1)} µs`);
      const calls = [...describe(topLevel), `inside the scripts: ${describe(inside).join(", ")}`];
      const usecPerMessage = topLevel.reduce((n, c) => n + c.usec, 0) / messages;
      out.push(
        `Redis command time per stored message during ${row.setup.id}: ${fmt(usecPerMessage, 1)} µs (${calls.join(", ")})`,
      );
    }
    const lossy = broadcast.filter((r) => r.result.missing > 0);
    for (const row of lossy)
      out.push(
        `WARNING: ${row.setup.id}: ${fmt(row.result.missing)} deliveries never arrived (3 s after the last send)`,
      );
    const saturated = broadcast.filter((r) => r.result.loadCpu > 0.85);
    out.push(
      saturated.length === 0
        ? "load generator stayed below 85% of one core in every broadcast run: it was not the limit"
        : `WARNING: load generator above 85% of one core for ${saturated.map((r) => r.setup.id).join(", ")}: those figures are a lower bound`,
    );
    out.push("");
  }
  if (latency) {
    const l = latency.result;
    const ms = (n: number) => fmt(n, 2);
    const row = (label: string, p: Percentiles) => [label, fmt(p.count), ms(p.p50), ms(p.p90), ms(p.p99), ms(p.max)];
    out.push(
      `Delivery latency, 2 instances + Redis, ${fmt(l.messagesPerSecond)} messages/s into one room of ${options.latencyClients} (${options.senders} paced senders, alternating instances):`,
      "",
      table([
        ["send -> receipt (ms)", "samples", "p50", "p90", "p99", "max"],
        row("receivers on the sender's instance (same)", l.same),
        row("receivers on the other instance (other)", l.other),
        row("hop per message: median other - median same", l.hop),
        ...(latency.centrifugo
          ? [
              row("Centrifugo: receivers on the sender's node", latency.centrifugo.same),
              row("Centrifugo: receivers on the other node", latency.centrifugo.other),
              row("Centrifugo: hop per message", latency.centrifugo.hop),
            ]
          : []),
        row("Redis pub/sub alone: publish -> subscriber", latency.pubsub.latency),
      ]),
      "",
      ...(latency.centrifugo
        ? [
            `this server / Centrifugo, same run: hop p99 ${fmt(l.hop.p99 / latency.centrifugo.hop.p99, 2)}, ` +
              `end-to-end p99 (other instance) ${fmt(l.other.p99 / latency.centrifugo.other.p99, 2)}; ` +
              `/ Redis pub/sub alone p99: this server's hop ${fmt(l.hop.p99 / latency.pubsub.latency.p99, 2)}, Centrifugo's ${fmt(latency.centrifugo.hop.p99 / latency.pubsub.latency.p99, 2)}; ` +
              `Centrifugo receipts ${fmt(latency.centrifugo.expected - latency.centrifugo.missing)} of ${fmt(latency.centrifugo.expected)}, CPU: ${Object.entries(
                latency.centrifugo.cpu,
              )
                .map(([name, share]) => `${name} ${pct(share)}`)
                .join(", ")}`,
          ]
        : []),
      `hop p99: ${ms(l.hop.p99)} ms (goal <= ${GOAL_HOP_P99_MS} ms: ${l.hop.p99 <= GOAL_HOP_P99_MS ? "met" : "MISSED"}); ` +
        `end-to-end p99 (receivers on the other instance): ${ms(l.other.p99)} ms (goal <= ${GOAL_END_TO_END_P99_MS} ms: ${l.other.p99 <= GOAL_END_TO_END_P99_MS ? "met" : "MISSED"}); ` +
        `p99 other - p99 same: ${ms(l.other.p99 - l.same.p99)} ms`,
      `receipts: ${fmt(l.expected - l.missing)} of ${fmt(l.expected)}` +
        (l.missing > 0
          ? ` (WARNING: ${fmt(l.missing)} missing 5 s after the last send, ${fmt(l.missingSame)} of them on the sender's instance; ${fmt(l.messagesIncomplete)} messages did not reach every member)`
          : "") +
        "; " +
        `CPU: ${Object.entries(l.cpu)
          .map(([name, share]) => `${name} ${pct(share)}`)
          .join(", ")}, load ${pct(l.loadCpu)}; ` +
        `longest pause between pacing ticks ${ms(l.worstTickGapMs)} ms (pub/sub alone: ${ms(latency.pubsub.worstTickGapMs)} ms)`,
      `backplane: ${latency.counters.map((c, k) => describeCounters(`chat-${"ab"[k]}`, c)).join("; ")}`,
    );
  }
  if (writeBehind) {
    const { drain, lag } = writeBehind;
    const d = lag.delaysMs;
    out.push(
      "",
      `Write-behind into PostgreSQL (one persister, in the benchmark's process, against the run's Redis and PostgreSQL):`,
      `drain: ${fmt(drain.messages)} waiting messages in ${drain.rooms} rooms written in ${fmt(drain.seconds, 2)} s: ${fmt(drain.perSecond)} messages/s (goal >= ${fmt(GOAL_DRAIN_PER_SECOND)}: ${drain.perSecond >= GOAL_DRAIN_PER_SECOND ? "met" : "MISSED"})`,
      `drain CPU per message: persister (the benchmark's process) ${fmt(drain.cpuPerMessage.persister, 1)} µs, PostgreSQL ${fmt(drain.cpuPerMessage.database, 1)} µs, Redis ${fmt(drain.cpuPerMessage.redis, 1)} µs`,
      `persistence lag at ${fmt(lag.rate)} messages/s for ${fmt(lag.seconds)} s, append -> commit (ms): ${fmt(d.count)} samples, p50 ${fmt(d.p50, 1)}, p90 ${fmt(d.p90, 1)}, p99 ${fmt(d.p99, 1)}, max ${fmt(d.max, 1)} (goal p99 < ${GOAL_PERSIST_P99_MS}: ${d.p99 < GOAL_PERSIST_P99_MS ? "met" : "MISSED"})`,
    );
  }
  console.log(out.join("\n"));
}

// ---- main ----------------------------------------------------------------------------------------

async function main() {
  const options = parseArgs(process.argv.slice(2));
  if (options.shards) return runShards(SHARDS_DEFAULTS);
  const load = (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ");
  step("starting redis-server");
  const redis = await startRedis();
  const needsDatabase = !options.skipWriteBehind || (!options.skipBroadcast && options.setups.some((s) => s.database));
  let postgres: PostgresServer | undefined;
  if (needsDatabase) {
    step("starting postgres");
    try {
      postgres = await startPostgres();
    } catch (error) {
      await stopRedis(redis);
      throw error;
    }
  }
  let centrifugo: string | undefined;
  let centrifugoNote = "Centrifugo: not measured (--skip-centrifugo)";
  if (!options.skipCentrifugo && (!options.skipLatency || options.setups.some((s) => s.centrifugo))) {
    step("locating Centrifugo (scripts/lib.sh centrifugo_bin)");
    const found = await centrifugoBinary();
    if ("path" in found) {
      centrifugo = found.path;
      centrifugoNote = `Centrifugo: ${found.version} (2 nodes, Redis engine on the run's Redis, history 1,000 / 600 s, force_recovery and force_positioning, insecure client mode, JSON protocol)`;
    } else {
      centrifugoNote = `Centrifugo: skipped, ${found.skipped}`;
      step(`note: ${centrifugoNote}`);
      options.setups = options.setups.filter((s) => !s.centrifugo);
    }
  }
  const environment = [
    `Scale-out benchmark (two instances through Redis), ${new Date().toISOString().slice(0, 19)}Z`,
    `machine: ${navigator.hardwareConcurrency} cores shared with other work (load average ${load} at start): every process below competes for them, figures vary between runs`,
    `Bun ${Bun.version}, Redis ${redis.version} (started by the run: loopback, no persistence)${postgres ? `, PostgreSQL ${postgres.version} (started by the run: loopback, fsync on)` : ""}; this server: ${chatDescription()}`,
    `broadcast: ${options.clients} clients in one room, client i on instance i mod n, taking turns to send, ${options.window} messages in flight, ${options.warmupMs} ms warm-up + ${options.durationMs} ms measured`,
    `latency: ${options.latencyClients} clients split evenly, ${options.senders} senders at ${options.rate} messages/s in total, ${options.latencyWarmupMs} ms warm-up + ${options.latencyDurationMs} ms measured; ` +
      "send and receipt times come from one load process",
    "CPU columns: share of one core during the measured interval; CPU µs/delivery counts the servers and Redis",
    centrifugoNote,
  ];
  const broadcast: BroadcastRow[] = [];
  let latency: LatencyRun | undefined;
  let writeBehind: WriteBehindResult | undefined;
  try {
    if (!options.skipBroadcast) {
      for (const setup of options.setups) {
        const t = performance.now();
        step(`broadcast: ${setup.label}`);
        const row = await measureBroadcast(setup, redis, options, postgres, centrifugo);
        broadcast.push(row);
        step(`  ${fmt(row.result.deliveriesPerSecond)} deliveries/s (${fmt((performance.now() - t) / 1000, 1)} s)`);
      }
    }
    if (!options.skipLatency) {
      const t = performance.now();
      step(`hop latency: 2 instances + Redis, ${options.rate} messages/s`);
      latency = await measureLatency(redis, options, centrifugo);
      step(`  hop p99 ${fmt(latency.result.hop.p99, 2)} ms (${fmt((performance.now() - t) / 1000, 1)} s)`);
    }
    if (!options.skipWriteBehind && postgres) {
      const t = performance.now();
      step(`write-behind: drain ${options.drainMessages} messages, then lag at ${options.rate} messages/s`);
      writeBehind = await measureWriteBehind(
        redis.url,
        postgres.url,
        {
          drainMessages: options.drainMessages,
          rooms: 50,
          rate: options.rate,
          durationMs: options.latencyDurationMs,
        },
        { database: () => postgres!.cpuSeconds(), redis: () => cpuSeconds(redis.child.proc.pid) },
      );
      step(
        `  ${fmt(writeBehind.drain.perSecond)} messages/s drained, lag p99 ${fmt(writeBehind.lag.delaysMs.p99, 1)} ms (${fmt((performance.now() - t) / 1000, 1)} s)`,
      );
    }
  } finally {
    await stopRedis(redis);
    await postgres?.stop();
  }
  report(broadcast, latency, writeBehind, options, environment);
  if (options.json) {
    await Bun.write(
      options.json,
      JSON.stringify(
        {
          environment,
          broadcast: broadcast.map((r) => ({
            setup: r.setup.id,
            servers: r.servers,
            ...r.result,
            counters: r.counters,
            commands: r.commands,
          })),
          latency,
          writeBehind,
        },
        null,
        2,
      ),
    );
  }
}

try {
  await main();
  process.exit(0);
} catch (error) {
  console.error(`benchmark failed: ${error instanceof BenchError ? error.message : (error as Error).stack}`);
  process.exit(1);
}
