// Core server benchmark: raw Bun.serve with native publish, Node + ws, and this server, one at a
// time on their own ports, measured in the same run by load generators in separate processes:
//   broadcast  room message frames delivered per second, N clients in one room taking turns to send
//   memory     server RSS per idle WebSocket at 10,000 connections (and after one join each)
// Prints a table and the ratios against raw Bun. A benchmark measures; it never fails on a figure.
//
// Usage: bun run bench [options]   (from app/; see usage() below)

import { join } from "node:path";
import type { BroadcastOptions, BroadcastResult as LoadResult } from "./load/broadcast";

/** The load generator's result, with the one server's share of a core. */
type BroadcastResult = LoadResult & { serverCpu: number };

import { cpuSeconds, rssBytes } from "./lib/cpu";
import { BenchError, type Child, freePort, indent, spawnChild, stopChild, waitHealthy } from "./lib/processes";
import { APP_DIR, type Target, targets } from "./lib/targets";

const GOAL_RATIO = 0.85;
/** The SQLite store against the same server keeping the hot history alone, in the same run. */
const GOAL_SQLITE_RATIO = 0.9;
const GOAL_BYTES_PER_CONNECTION = 4096;

interface Options {
  only: Set<Target["id"]>;
  clients: number;
  window: number;
  padding: number;
  warmupMs: number;
  durationMs: number;
  connections: number;
  loadProcesses: number;
  /** HEARTBEAT_INTERVAL of the chat server; undefined keeps the benchmark's 600 s (none in a run). */
  heartbeatMs: number | undefined;
  /** How long the server's CPU is read once the idle connections are open. */
  idleCpuMs: number;
  skipBroadcast: boolean;
  skipMemory: boolean;
  json: string | undefined;
}

function usage(): string {
  return `usage: bun run bench [options]

  --targets LIST       servers to measure, comma-separated (default: raw-bun,node-ws,chat,chat-plain,
                       chat-sqlite; chat asks for batched frames, chat-plain does not, chat-sqlite is chat
                       on the SQLite store); the diagnostic elysia-route and elysia-upgrade run the
                       raw-bun behaviour on Elysia
  --clients N          clients in the broadcast room, taking turns to send (default 32)
  --window N           messages in flight: sent, not yet received by every client (default 512)
  --padding N          extra characters in each message text (default 0)
  --warmup MS          broadcast warm-up before measuring (default 1000)
  --duration MS        measured broadcast interval (default 5000)
  --connections N      idle connections for the memory figure (default 10000)
  --load-processes N   processes holding the idle client sockets (default 2)
  --heartbeat MS       the chat server's HEARTBEAT_INTERVAL (default 600000: no heartbeat during a run),
                       to measure what heartbeats cost at idle
  --idle-cpu MS        how long the server's CPU is read with the idle connections open (default 10000)
  --skip-broadcast     only the memory figure
  --skip-memory        only the broadcast figure
  --json FILE          also write the results as JSON
  -h, --help           this text`;
}

function parseArgs(argv: string[]): Options {
  const options: Options = {
    only: new Set(["raw-bun", "node-ws", "chat", "chat-plain", "chat-sqlite"]),
    clients: 32,
    window: 512,
    padding: 0,
    warmupMs: 1000,
    durationMs: 5000,
    connections: 10_000,
    loadProcesses: 2,
    heartbeatMs: undefined,
    idleCpuMs: 10_000,
    skipBroadcast: false,
    skipMemory: false,
    json: undefined,
  };
  const positive = (name: string, value: string | undefined) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) usageError(`${name} needs a positive integer, got ${value ?? "nothing"}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    switch (arg) {
      case "--targets": {
        const ids = (argv[++i] ?? "").split(",").filter(Boolean);
        const known: string[] = targets().map((t) => t.id);
        const unknown = ids.filter((id) => !known.includes(id));
        if (ids.length === 0 || unknown.length > 0) usageError(`--targets takes a list of ${known.join(", ")}`);
        options.only = new Set(ids as Target["id"][]);
        break;
      }
      case "--clients":
        options.clients = positive(arg, argv[++i]);
        break;
      case "--window":
        options.window = positive(arg, argv[++i]);
        break;
      case "--padding":
        options.padding = Number(argv[++i]);
        if (!Number.isInteger(options.padding) || options.padding < 0) usageError("--padding needs an integer >= 0");
        break;
      case "--warmup":
        options.warmupMs = positive(arg, argv[++i]);
        break;
      case "--duration":
        options.durationMs = positive(arg, argv[++i]);
        break;
      case "--connections":
        options.connections = positive(arg, argv[++i]);
        break;
      case "--load-processes":
        options.loadProcesses = positive(arg, argv[++i]);
        break;
      case "--heartbeat":
        options.heartbeatMs = positive(arg, argv[++i]);
        break;
      case "--idle-cpu":
        options.idleCpuMs = positive(arg, argv[++i]);
        break;
      case "--skip-broadcast":
        options.skipBroadcast = true;
        break;
      case "--skip-memory":
        options.skipMemory = true;
        break;
      case "--json":
        options.json = argv[++i] ?? usageError("--json needs a file name");
        break;
      case "-h":
      case "--help":
        console.log(usage());
        return process.exit(0);
      default:
        usageError(`unknown argument ${arg}`);
    }
  }
  return options;
}

function usageError(message: string): never {
  console.error(`${message}\n\n${usage()}`);
  process.exit(2);
}

// ---- measurements --------------------------------------------------------------------------------

interface MemoryResult {
  connections: number;
  rssBefore: number;
  rssIdle: number;
  rssJoined: number;
  /** Share of one core the server used with every connection open and idle, over --idle-cpu. */
  idleCpu: number;
  bytesPerIdle: number;
  bytesPerJoined: number;
  settled: boolean;
}

interface TargetResult {
  target: Target;
  broadcast?: BroadcastResult;
  memory?: MemoryResult;
}

function step(message: string) {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${message}\n`);
}

async function startServer(target: Target, options: Options): Promise<{ child: Child; port: number }> {
  const port = freePort();
  const { cmd, env } = target.command(port);
  if (options.heartbeatMs !== undefined && target.id.startsWith("chat"))
    env.HEARTBEAT_INTERVAL = String(options.heartbeatMs);
  const child = spawnChild(target.id, cmd, { cwd: APP_DIR, env, minOpenFiles: options.connections + 256 });
  await waitHealthy(child, port, 20_000);
  return { child, port };
}

/** Samples RSS every 250 ms until it moves less than 0.5% over one second (at most `maxMs`). */
async function settledRss(pid: number, maxMs = 10_000): Promise<{ rss: number; settled: boolean }> {
  const deadline = Date.now() + maxMs;
  const samples: number[] = [rssBytes(pid)];
  for (;;) {
    await Bun.sleep(250);
    samples.push(rssBytes(pid));
    const last = samples.slice(-5);
    if (last.length === 5 && Math.max(...last) - Math.min(...last) <= 0.005 * Math.max(...last)) {
      return { rss: last[4]!, settled: true };
    }
    if (Date.now() > deadline) return { rss: samples.at(-1)!, settled: false };
  }
}

async function measureBroadcast(target: Target, options: Options): Promise<BroadcastResult> {
  const { child: server, port } = await startServer(target, options);
  try {
    const load: BroadcastOptions = {
      ports: [port],
      pathPrefix: target.broadcastPathPrefix,
      pathSuffix: target.broadcastQuery,
      clients: options.clients,
      window: options.window,
      padding: options.padding,
      warmupMs: options.warmupMs,
      durationMs: options.durationMs,
      processes: [{ name: "server", pid: server.proc.pid }],
      room: "bench",
    };
    const generator = spawnChild(
      `${target.id} broadcast load`,
      [process.execPath, join(import.meta.dir, "load", "broadcast.ts"), JSON.stringify(load)],
      {
        cwd: APP_DIR,
      },
    );
    const line = await generator.nextLine(options.warmupMs + options.durationMs + 30_000, "measuring broadcast");
    await generator.proc.exited;
    if (server.proc.exitCode !== null)
      throw new BenchError(`${target.id} exited during the broadcast run:\n${indent(server.tail())}`);
    const result = JSON.parse(line) as LoadResult;
    return { ...result, serverCpu: result.cpu.server! };
  } finally {
    await stopChild(server);
  }
}

async function measureMemory(target: Target, options: Options): Promise<MemoryResult> {
  const { child: server, port } = await startServer(target, options);
  const pid = server.proc.pid;
  const generators: Child[] = [];
  try {
    const before = await settledRss(pid);
    const per = Math.ceil(options.connections / options.loadProcesses);
    for (let p = 0; p < options.loadProcesses; p++) {
      const first = p * per;
      const count = Math.min(per, options.connections - first);
      if (count <= 0) break;
      const load = {
        port,
        pathPrefix: target.idlePathPrefix,
        first,
        count,
        waitFirstFrame: target.greets,
        timeoutMs: 60_000,
      };
      generators.push(
        spawnChild(
          `${target.id} idle load ${p + 1}`,
          [process.execPath, join(import.meta.dir, "load", "idle.ts"), JSON.stringify(load)],
          {
            cwd: APP_DIR,
            minOpenFiles: count + 64,
          },
        ),
      );
    }
    const opened = await Promise.all(
      generators.map((g) => g.nextLine(90_000, `opening ${options.connections} idle connections`)),
    );
    step(`  ${options.connections} idle connections open (${opened.map((l) => `${JSON.parse(l).ms} ms`).join(", ")})`);
    const idle = await settledRss(pid);
    const cpuBefore = cpuSeconds(pid);
    const cpuFrom = performance.now();
    await Bun.sleep(options.idleCpuMs);
    const idleCpu = (cpuSeconds(pid) - cpuBefore) / ((performance.now() - cpuFrom) / 1000);
    for (const g of generators) g.write("join");
    await Promise.all(generators.map((g) => g.nextLine(90_000, "joining one room per connection")));
    const joined = await settledRss(pid);
    return {
      connections: options.connections,
      rssBefore: before.rss,
      rssIdle: idle.rss,
      rssJoined: joined.rss,
      idleCpu,
      bytesPerIdle: (idle.rss - before.rss) / options.connections,
      bytesPerJoined: (joined.rss - before.rss) / options.connections,
      settled: before.settled && idle.settled && joined.settled,
    };
  } finally {
    for (const g of generators) {
      try {
        g.write("exit");
      } catch {
        // Already gone: stopChild below is a no-op then.
      }
    }
    await Promise.all(generators.map((g) => Promise.race([g.proc.exited, Bun.sleep(10_000)])));
    for (const g of generators) await stopChild(g, 1000);
    await stopChild(server);
  }
}

// ---- report --------------------------------------------------------------------------------------

const cpuPerDelivery = (b: BroadcastResult) => b.serverCpu / b.deliveriesPerSecond;
const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const mib = (bytes: number) => `${fmt(bytes / 1048576, 1)} MiB`;

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) =>
    `| ${r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join(" | ")} |`;
  const rule = `|${widths.map((w, c) => (c === 0 ? `:${"-".repeat(w + 1)}` : `${"-".repeat(w + 1)}:`)).join("|")}|`;
  return [line(rows[0]!), rule, ...rows.slice(1).map(line)].join("\n");
}

function report(results: TargetResult[], options: Options, environment: string[]) {
  const rows: string[][] = [
    [
      "server",
      "deliveries/s",
      "server CPU",
      "load CPU",
      "server CPU µs/delivery",
      "frame B",
      "deliveries/WS frame",
      "RSS before",
      "B/idle conn",
      "B/conn, 1 join",
      "idle CPU",
    ],
  ];
  for (const { target, broadcast: b, memory: m } of results) {
    rows.push([
      target.label,
      b ? fmt(b.deliveriesPerSecond) : "-",
      b ? `${fmt(b.serverCpu * 100)}%` : "-",
      b ? `${fmt(b.loadCpu * 100)}%` : "-",
      b ? fmt(cpuPerDelivery(b) * 1e6, 2) : "-",
      b ? fmt(b.frameBytes) : "-",
      b ? fmt(b.deliveriesPerFrame, 1) : "-",
      m ? mib(m.rssBefore) : "-",
      m ? fmt(m.bytesPerIdle) : "-",
      m ? fmt(m.bytesPerJoined) : "-",
      m ? `${fmt(m.idleCpu * 100, 1)}%` : "-",
    ]);
  }
  const out: string[] = ["", ...environment, "", table(rows), ""];

  const byId = new Map(results.map((r) => [r.target.id, r]));
  const raw = byId.get("raw-bun");
  const chat = byId.get("chat");
  const node = byId.get("node-ws");
  const plain = byId.get("chat-plain");
  if (raw?.broadcast && chat?.broadcast) {
    const ratio = chat.broadcast.deliveriesPerSecond / raw.broadcast.deliveriesPerSecond;
    out.push(
      `this server (batched) / raw Bun, deliveries per second: ${fmt(ratio, 2)} (goal >= ${GOAL_RATIO}: ${ratio >= GOAL_RATIO ? "met" : "MISSED"})`,
    );
  }
  // CPU per delivery does not depend on how much of a core the other work on the machine left.
  for (const [name, r] of [
    ["batched", chat],
    ["plain", plain],
  ] as const) {
    if (!raw?.broadcast || !r?.broadcast) continue;
    const cpuRatio = cpuPerDelivery(r.broadcast) / cpuPerDelivery(raw.broadcast);
    out.push(
      `this server (${name}) / raw Bun, server CPU per delivery: ${fmt(cpuRatio, 2)}x (the steadier figure on a shared machine)`,
    );
  }
  const sqlite = byId.get("chat-sqlite");
  if (chat?.broadcast && sqlite?.broadcast) {
    const ratio = sqlite.broadcast.deliveriesPerSecond / chat.broadcast.deliveriesPerSecond;
    out.push(
      `SQLite store / hot history alone (STORE=memory), deliveries per second: ${fmt(ratio, 2)} (goal >= ${GOAL_SQLITE_RATIO}: ${ratio >= GOAL_SQLITE_RATIO ? "met" : "MISSED"})`,
    );
    const perCpu = cpuPerDelivery(chat.broadcast) / cpuPerDelivery(sqlite.broadcast);
    out.push(`SQLite store / hot history alone, deliveries per server CPU second: ${fmt(perCpu, 2)}`);
  }
  if (raw?.broadcast && node?.broadcast) {
    out.push(
      `Node + ws / raw Bun, deliveries per second: ${fmt(node.broadcast.deliveriesPerSecond / raw.broadcast.deliveriesPerSecond, 2)} (reference)`,
    );
  }
  if (chat?.memory) {
    const b = chat.memory.bytesPerIdle;
    out.push(
      `this server, bytes per idle connection: ${fmt(b)} (goal <= ${GOAL_BYTES_PER_CONNECTION}: ${b <= GOAL_BYTES_PER_CONNECTION ? "met" : "MISSED"})`,
    );
    if (raw?.memory)
      out.push(`this server / raw Bun, bytes per idle connection: ${fmt(b / raw.memory.bytesPerIdle, 2)}`);
    if (node?.memory) out.push(`Node + ws, bytes per idle connection: ${fmt(node.memory.bytesPerIdle)} (reference)`);
    const m = chat.memory;
    out.push(
      `this server at idle with ${fmt(m.connections)} connections: ${fmt(m.idleCpu * 100, 1)}% of a core, RSS ${mib(m.rssIdle)}` +
        (options.heartbeatMs !== undefined
          ? `; heartbeats every ${fmt(options.heartbeatMs)} ms: ${fmt((m.idleCpu / (m.connections / (options.heartbeatMs / 1000))) * 1e6, 1)} µs of CPU per heartbeat (all idle CPU counted as heartbeat cost)`
          : " (no heartbeat during the run; --heartbeat MS to measure their cost)"),
    );
  }
  const saturated = results.filter((r) => r.broadcast && r.broadcast.loadCpu > 0.85);
  if (results.some((r) => r.broadcast)) {
    out.push(
      saturated.length === 0
        ? "load generator stayed below 85% of one core in every broadcast run: it was not the limit"
        : `WARNING: load generator above 85% of one core for ${saturated.map((r) => r.target.id).join(", ")}: those figures are a lower bound`,
    );
  }
  const starved = results.filter((r) => r.broadcast && r.broadcast.serverCpu < 0.9 && r.broadcast.loadCpu < 0.85);
  if (starved.length > 0) {
    out.push(
      `note: neither the server nor the load generator used a whole core for ${starved.map((r) => r.target.id).join(", ")}: ` +
        "other work on the machine took the rest, so their deliveries/s are low; compare CPU per delivery",
    );
  }
  for (const r of results.filter((r) => r.broadcast && r.broadcast.missing > 0)) {
    out.push(
      `WARNING: ${r.target.id}: ${fmt(r.broadcast!.missing)} deliveries never arrived (3 s after the last send)`,
    );
  }
  const unsettled = results.filter((r) => r.memory && !r.memory.settled);
  if (unsettled.length > 0)
    out.push(`note: RSS still moving after 10 s for ${unsettled.map((r) => r.target.id).join(", ")}`);
  console.log(out.join("\n"));
}

// ---- main ----------------------------------------------------------------------------------------

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const chosen = targets().filter((t) => options.only.has(t.id));
  const isChat = (t: Target) => Number(t.id === "chat" || t.id === "chat-plain");
  chosen.sort((a, b) => isChat(a) - isChat(b));
  const nodeVersion = Bun.which("node")
    ? Bun.spawnSync(["node", "--version"]).stdout.toString().trim()
    : "not installed";
  const wsVersion = (await import("ws/package.json")).default.version as string;
  const load = (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ");
  const environment = [
    `Core server benchmark, ${new Date().toISOString().slice(0, 19)}Z`,
    `machine: ${navigator.hardwareConcurrency} cores shared with other work (load average ${load} at start): figures vary between runs`,
    `Bun ${Bun.version}, Node ${nodeVersion}, ws ${wsVersion}; this server: ${chosen.find((t) => t.id === "chat")?.describe ?? "not measured"}`,
    `broadcast: ${options.clients} clients in one room, taking turns to send, ${options.window} messages in flight, ${options.padding > 0 ? `texts padded by ${options.padding} characters, ` : ""}${options.warmupMs} ms warm-up + ${options.durationMs} ms measured`,
    `memory: server RSS (VmRSS) before and after ${options.connections} idle connections held by ${options.loadProcesses} load processes, joined to nothing; then after one join each (a room per connection)`,
    `CPU columns: share of one core during the measured interval; the load generator is one process`,
  ];

  const results: TargetResult[] = [];
  for (const target of chosen) {
    const result: TargetResult = { target };
    results.push(result);
    // chat-plain is the same server: its idle connections (which ask for nothing) are measured once, as chat.
    if (!options.skipMemory && target.id !== "chat-plain") {
      const t = performance.now();
      step(`${target.id}: memory at ${options.connections} idle connections`);
      result.memory = await measureMemory(target, options);
      step(
        `${target.id}: ${fmt(result.memory.bytesPerIdle)} B per idle connection (${fmt((performance.now() - t) / 1000, 1)} s)`,
      );
    }
    if (!options.skipBroadcast) {
      const t = performance.now();
      step(`${target.id}: broadcast, ${options.clients} clients in one room`);
      result.broadcast = await measureBroadcast(target, options);
      step(
        `${target.id}: ${fmt(result.broadcast.deliveriesPerSecond)} deliveries/s (${fmt((performance.now() - t) / 1000, 1)} s)`,
      );
    }
  }
  report(results, options, environment);
  if (options.json) {
    await Bun.write(
      options.json,
      JSON.stringify(
        {
          environment,
          results: results.map((r) => ({ target: r.target.id, broadcast: r.broadcast, memory: r.memory })),
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
