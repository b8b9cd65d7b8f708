// Shards comparison (`bun run bench:redis --shards`): the same broadcast load spread over many rooms,
// through two instances of this server on one Redis and on a Redis Cluster of 3 masters, both
// started by the run on loopback ports (no persistence, no replicas). Reports Redis CPU per message
// on the busiest master against the single Redis (the work is spread), and instance CPU per
// delivery against the single-Redis run. On a machine with fewer cores than processes the totals
// cannot grow: CPU per message per shard is the figure. A benchmark measures; it never fails on a
// figure.

import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BenchError, type Child, freePort, indent, spawnChild, stopChild, waitHealthy } from "./lib/processes";
import { startRedis, stopRedis } from "./lib/redis-server";
import { APP_DIR, chatCommand, chatDescription } from "./lib/targets";
import type { RoomsOptions, RoomsResult } from "./load/rooms";

const GOAL_BUSIEST_SHARD = 0.4;
const GOAL_INSTANCE_CPU = 1.1;

export interface ShardsOptions {
  rooms: number;
  clients: number;
  window: number;
  warmupMs: number;
  durationMs: number;
}

export const SHARDS_DEFAULTS: ShardsOptions = {
  rooms: 300,
  clients: 600,
  window: 512,
  warmupMs: 2000,
  durationMs: 8000,
};

interface RedisNode {
  name: string;
  child: Child;
  port: number;
}

function step(message: string) {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${message}\n`);
}

/** Three masters, no replicas: `redis-cli --cluster create`, then every node says cluster_state:ok. */
async function startCluster(dir: string): Promise<RedisNode[]> {
  const nodes: RedisNode[] = [];
  try {
    for (let k = 0; k < 3; k++) {
      const port = freePort();
      const nodeDir = join(dir, String(port));
      mkdirSync(nodeDir);
      const child = spawnChild(
        `redis-${k + 1}`,
        [
          "redis-server",
          "--port",
          String(port),
          "--cluster-port",
          String(freePort()),
          "--bind",
          "127.0.0.1",
          "--dir",
          nodeDir,
          "--cluster-enabled",
          "yes",
          "--save",
          "",
          "--appendonly",
          "no",
        ],
        { cwd: nodeDir },
      );
      nodes.push({ name: `redis-${k + 1}`, child, port });
    }
    for (const node of nodes)
      for (;;) {
        const line = await node.child.nextLine(10_000, "starting");
        if (line.includes("Ready to accept connections")) break;
      }
    const create = Bun.spawnSync(
      [
        "redis-cli",
        "--cluster",
        "create",
        ...nodes.map((n) => `127.0.0.1:${n.port}`),
        "--cluster-replicas",
        "0",
        "--cluster-yes",
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    if (create.exitCode !== 0)
      throw new BenchError(`redis-cli --cluster create failed:\n${indent(create.stderr.toString())}`);
    const deadline = Date.now() + 20_000;
    for (const node of nodes)
      while (
        !Bun.spawnSync(["redis-cli", "-p", String(node.port), "cluster", "info"])
          .stdout.toString()
          .includes("cluster_state:ok")
      ) {
        if (Date.now() > deadline) throw new BenchError("the cluster did not reach cluster_state:ok");
        await Bun.sleep(50);
      }
    return nodes;
  } catch (error) {
    await Promise.all(nodes.map((n) => stopChild(n.child)));
    throw error;
  }
}

/** One command's INFO commandstats counters on one Redis process. */
interface CommandStat {
  calls: number;
  usec: number;
}

/** INFO commandstats of a Redis process, by command (commands run by scripts are counted too). */
function commandStats(port: number): Map<string, CommandStat> {
  const out = Bun.spawnSync(["redis-cli", "-p", String(port), "info", "commandstats"]).stdout.toString();
  const stats = new Map<string, CommandStat>();
  for (const match of out.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm))
    stats.set(match[1]!, { calls: Number(match[2]), usec: Number(match[3]) });
  return stats;
}

function resetStats(port: number) {
  Bun.spawnSync(["redis-cli", "-p", String(port), "config", "resetstat"]);
}

interface Run {
  label: string;
  result: RoomsResult;
  instances: string[];
  redis: string[];
  /** Per Redis process, its commandstats over the measured interval. */
  commands: Map<string, CommandStat>[];
}

async function measure(
  label: string,
  redisEnv: Record<string, string>,
  redis: RedisNode[],
  options: ShardsOptions,
): Promise<Run> {
  const servers: { name: string; child: Child; port: number }[] = [];
  try {
    for (const name of ["chat-a", "chat-b"]) {
      const port = freePort();
      const { cmd, env } = chatCommand(port, {
        INSTANCE_ID: `bench-${name}`,
        MAX_CONNECTIONS_PER_USER: "100000",
        REDIS_REQUIRED: "true",
        REDIS_KEY_PREFIX: "shards:",
        ...redisEnv,
      });
      servers.push({ name, child: spawnChild(name, cmd, { cwd: APP_DIR, env }), port });
    }
    await Promise.all(servers.map((s) => waitHealthy(s.child, s.port, 20_000, "/health/ready")));
    const load: RoomsOptions = {
      ports: servers.map((s) => s.port),
      pathPrefix: "/ws/chat/shards",
      clients: options.clients,
      window: options.window,
      warmupMs: options.warmupMs,
      durationMs: options.durationMs,
      processes: [
        ...servers.map((s) => ({ name: s.name, pid: s.child.proc.pid })),
        ...redis.map((r) => ({ name: r.name, pid: r.child.proc.pid })),
      ],
      room: "shard-room",
      rooms: options.rooms,
    };
    const generator = spawnChild(
      `${label} load`,
      [process.execPath, join(import.meta.dir, "load", "rooms.ts"), JSON.stringify(load)],
      { cwd: APP_DIR },
    );
    const next = (what: string) =>
      generator.nextLine(options.warmupMs + options.durationMs + 60_000, what).catch((error: Error) => {
        throw new BenchError(
          `${error.message}\n${servers.map((s) => `${s.name}:\n${indent(s.child.tail())}`).join("\n")}`,
        );
      });
    // The commands each Redis runs are counted over the measured interval only (`measuring` to `measured`).
    await next("warming up");
    for (const node of redis) resetStats(node.port);
    await next("measuring");
    const commands = redis.map((node) => commandStats(node.port));
    const line = await next("draining");
    await generator.proc.exited;
    return {
      label,
      result: JSON.parse(line) as RoomsResult,
      instances: servers.map((s) => s.name),
      redis: redis.map((r) => r.name),
      commands,
    };
  } finally {
    await Promise.all(servers.map((s) => stopChild(s.child)));
  }
}

const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

function figures(run: Run) {
  const r = run.result;
  const instanceCpu = run.instances.reduce((n, name) => n + (r.cpu[name] ?? 0), 0);
  const redisCpu = run.redis.map((name) => r.cpu[name] ?? 0);
  return {
    instanceCpu,
    redisCpu,
    /** µs of instance CPU per delivered frame. */
    instancePerDelivery: (instanceCpu / r.deliveriesPerSecond) * 1e6,
    /** µs of the busiest Redis process per message sent. */
    busiestPerMessage: (Math.max(...redisCpu) / r.messagesPerSecond) * 1e6,
    totalRedisPerMessage: (redisCpu.reduce((a, b) => a + b, 0) / r.messagesPerSecond) * 1e6,
  };
}

export async function runShards(options: ShardsOptions) {
  const dir = mkdtempSync(join(tmpdir(), "bench-shards-"));
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  const load = (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ");
  const runs: Run[] = [];
  step("single Redis");
  const single = await startRedis();
  try {
    runs.push(
      await measure(
        "one Redis",
        { REDIS_URL: single.url },
        [{ name: "redis", child: single.child, port: single.port }],
        options,
      ),
    );
  } finally {
    await stopRedis(single);
  }
  step("Redis Cluster, 3 masters");
  const cluster = await startCluster(dir);
  try {
    runs.push(
      await measure(
        "Redis Cluster, 3 masters",
        { REDIS_CLUSTER_NODES: cluster.map((n) => `127.0.0.1:${n.port}`).join(",") },
        cluster,
        options,
      ),
    );
  } finally {
    await Promise.all(cluster.map((n) => stopChild(n.child)));
  }

  const out = [
    "",
    `Shards benchmark, ${new Date().toISOString().slice(0, 19)}Z`,
    `machine: ${navigator.hardwareConcurrency} cores shared with other work (load average ${load} at start): every process competes for them, figures vary between runs`,
    `Bun ${Bun.version}, Redis ${single.version} (loopback, no persistence, no replicas); this server: ${chatDescription()}, 2 instances`,
    `load: ${options.clients} clients in ${options.rooms} rooms (members of each room on both instances), taking turns to send into their room, ${options.window} messages in flight, ${options.warmupMs} ms warm-up + ${options.durationMs} ms measured`,
    "",
    "| setup | messages/s | deliveries/s | instance CPU | Redis CPU per process | instance µs/delivery | busiest Redis µs/message | all Redis µs/message | missing |",
    "|:--|--:|--:|--:|--:|--:|--:|--:|--:|",
  ];
  for (const run of runs) {
    const f = figures(run);
    out.push(
      `| ${run.label} | ${fmt(run.result.messagesPerSecond)} | ${fmt(run.result.deliveriesPerSecond)} | ${fmt(f.instanceCpu * 100)}% | ${f.redisCpu.map((c) => `${fmt(c * 100)}%`).join(" + ")} | ${fmt(f.instancePerDelivery, 1)} | ${fmt(f.busiestPerMessage, 1)} | ${fmt(f.totalRedisPerMessage, 1)} | ${fmt(run.result.missing)} |`,
    );
  }
  const [one, three] = runs.map(figures) as [ReturnType<typeof figures>, ReturnType<typeof figures>];
  const shard = three.busiestPerMessage / one.busiestPerMessage;
  const instance = three.instancePerDelivery / one.instancePerDelivery;
  out.push(
    "",
    `busiest master's Redis CPU per message / one Redis's: ${fmt(shard, 2)} (goal <= ${GOAL_BUSIEST_SHARD}: ${shard <= GOAL_BUSIEST_SHARD ? "met" : "MISSED"})`,
    `instance CPU per delivery, cluster / one Redis: ${fmt(instance, 2)} (goal <= ${GOAL_INSTANCE_CPU}: ${instance <= GOAL_INSTANCE_CPU ? "met" : "MISSED"})`,
  );
  for (const run of runs) out.push("", ...commandTable(run));
  console.log(out.join("\n"));
}

/**
 * Per Redis process, each command's calls and µs per message sent (INFO commandstats over the
 * measured interval; a script's commands are counted on their own and inside its EVALSHA's µs).
 */
function commandTable(run: Run): string[] {
  const messages = run.result.messagesPerSecond * run.result.seconds;
  const names = new Set(run.commands.flatMap((stats) => [...stats.keys()]));
  const usecOf = (name: string) => run.commands.reduce((n, stats) => n + (stats.get(name)?.usec ?? 0), 0);
  const lines = [
    `${run.label}, per message sent: calls and µs of each command on each Redis process (INFO commandstats)`,
    "",
    `| command | ${run.redis.join(" | ")} |`,
    `|:--|${run.redis.map(() => "--:|").join("")}`,
  ];
  for (const name of [...names].sort((a, b) => usecOf(b) - usecOf(a))) {
    const cells = run.commands.map((stats) => {
      const s = stats.get(name);
      return s ? `${fmt(s.calls / messages, 3)} (${fmt(s.usec / messages, 2)} µs)` : "";
    });
    lines.push(`| ${name} | ${cells.join(" | ")} |`);
  }
  return lines;
}
