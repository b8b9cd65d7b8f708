// Connections at scale through Redis: N instances of the chat server on one redis-server, each held
// by its own idle-connection load process (bench/load/idle.ts), then one broadcast notice
// (POST /admin/broadcast on the first instance) that every connection on every instance must get.
// Prints the set-up rate, each instance's RSS, Redis's memory and the broadcast's delivery time.
// A benchmark measures; it never fails on a figure.
//
// Usage: bun run bench:scale [options]   (from app/; see usage() below)

import Redis from "ioredis";
import { rssBytes } from "./lib/cpu";
import { BenchError, type Child, freePort, indent, spawnChild, stopChild, waitHealthy } from "./lib/processes";
import { type RedisServer, startRedis, stopRedis } from "./lib/redis-server";
import { APP_DIR, chatCommand, chatDescription } from "./lib/targets";

interface Options {
  instances: number;
  connections: number;
  timeoutMs: number;
}

const ADMIN_TOKEN = "bench-scale-admin-token";
/** One process holds one instance's connections: at most this many, under the open-file limit. */
const MAX_PER_PROCESS = 19_000;

function usage(): string {
  return `usage: bun run bench:scale [options]

  --instances N      chat server instances sharing one redis-server (default 6)
  --connections N    WebSocket connections in all, split evenly over the instances, each instance's
                     held by one load process (default 100000; at most ${MAX_PER_PROCESS} per instance)
  --timeout MS       how long opening the connections and the delivery may take (default 300000)
  -h, --help         this text

Exit codes: 0 measured, 1 could not measure (a process failed or timed out), 2 usage error.`;
}

function usageError(message: string): never {
  console.error(`${message}\n\n${usage()}`);
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const options: Options = { instances: 6, connections: 100_000, timeoutMs: 300_000 };
  const positive = (name: string, value: string | undefined) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) usageError(`${name} needs a positive integer, got ${value ?? "nothing"}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    switch (arg) {
      case "--instances":
        options.instances = positive(arg, argv[++i]);
        break;
      case "--connections":
        options.connections = positive(arg, argv[++i]);
        break;
      case "--timeout":
        options.timeoutMs = positive(arg, argv[++i]);
        break;
      case "-h":
      case "--help":
        console.log(usage());
        return process.exit(0);
      default:
        usageError(`unknown argument ${arg}`);
    }
  }
  if (Math.ceil(options.connections / options.instances) > MAX_PER_PROCESS)
    usageError(`at most ${MAX_PER_PROCESS} connections per instance: raise --instances`);
  return options;
}

function step(message: string) {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${message}\n`);
}

const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

interface Instance {
  name: string;
  child: Child;
  port: number;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const per = Math.ceil(options.connections / options.instances);
  const instances: Instance[] = [];
  const loads: Child[] = [];
  let redis: RedisServer | undefined;
  let client: Redis | undefined;
  try {
    step("starting redis-server");
    redis = await startRedis();
    for (let k = 0; k < options.instances; k++) {
      const port = freePort();
      const name = `chat-${k + 1}`;
      const { cmd, env } = chatCommand(port, {
        INSTANCE_ID: `scale-${name}`,
        REDIS_URL: redis.url,
        REDIS_REQUIRED: "true",
        REDIS_KEY_PREFIX: "scale:",
        ADMIN_TOKEN,
        MAX_CONNECTIONS: String(per + 100),
      });
      instances.push({ name, port, child: spawnChild(name, cmd, { cwd: APP_DIR, env, minOpenFiles: per + 256 }) });
    }
    await Promise.all(instances.map((s) => waitHealthy(s.child, s.port, 30_000, "/health/ready")));
    const rssBefore = instances.map((s) => rssBytes(s.child.proc.pid));
    step(`${options.instances} instances ready; opening ${fmt(options.connections)} connections`);

    const started = performance.now();
    instances.forEach((s, k) => {
      const count = Math.min(per, options.connections - k * per);
      const load = {
        port: s.port,
        pathPrefix: "/ws/chat/scale",
        first: k * per,
        count,
        waitFirstFrame: true,
        timeoutMs: options.timeoutMs,
      };
      loads.push(
        spawnChild(`load for ${s.name}`, [process.execPath, `${import.meta.dir}/load/idle.ts`, JSON.stringify(load)], {
          cwd: APP_DIR,
          minOpenFiles: count + 64,
        }),
      );
    });
    const opened = await Promise.all(loads.map((l) => l.nextLine(options.timeoutMs, "opening connections")));
    const setupMs = performance.now() - started;
    const perProcessMs = opened.map((line) => JSON.parse(line).ms as number);
    step(`${fmt(options.connections)} connections open in ${fmt(setupMs / 1000, 1)} s`);

    // Let the instances settle (user topics subscribed on Redis) before reading memory.
    await Bun.sleep(3000);
    const rss = instances.map((s) => rssBytes(s.child.proc.pid));
    client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await client.connect();
    const memory = /used_memory:(\d+)/.exec(await client.info("memory"))?.[1];

    const marker = `scale-${process.pid}-${Date.now()}`;
    for (const l of loads) l.write(`await ${marker}`);
    await Promise.all(loads.map((l) => l.nextLine(10_000, "arming")));
    const sentAt = Date.now();
    const response = await fetch(`http://127.0.0.1:${instances[0]!.port}/admin/broadcast`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ text: marker }),
    });
    if (!response.ok) throw new BenchError(`POST /admin/broadcast answered ${response.status}`);
    const arrivals = await Promise.all(loads.map((l) => l.nextLine(options.timeoutMs, "receiving the broadcast")));
    const lastAt = arrivals.map((line) => (JSON.parse(line).at as number) - sentAt);

    const lines = [
      "",
      `Connections at scale, ${new Date().toISOString().slice(0, 19)}Z`,
      `machine: ${navigator.hardwareConcurrency} cores shared with every process below (load average ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")} at the end)`,
      `${options.instances} instances of ${chatDescription()} on one redis-server, ${fmt(options.connections)} idle connections (${fmt(per)} per instance, one load process each; no room joined, heartbeats out of the way)`,
      "",
      `set-up: ${fmt(options.connections)} connections open in ${fmt(setupMs / 1000, 1)} s: ${fmt(options.connections / (setupMs / 1000))} per second (load processes ${perProcessMs.map((ms) => `${fmt(ms / 1000, 1)} s`).join(", ")})`,
      `instances RSS: ${rss.map((b, k) => `${instances[k]!.name} ${fmt(rssBefore[k]! / 1048576, 1)} -> ${fmt(b / 1048576, 1)} MiB`).join(", ")}`,
      `bytes per connection (RSS growth / connections): ${fmt(rss.reduce((sum, b, k) => sum + b - rssBefore[k]!, 0) / options.connections)}`,
      `Redis used_memory: ${memory ? `${fmt(Number(memory) / 1048576, 1)} MiB` : "unknown"}`,
      `broadcast notice to every connection (POST /admin/broadcast on ${instances[0]!.name}): all ${fmt(options.connections)} received within ${fmt(Math.max(...lastAt))} ms (last arrival per instance: ${lastAt.map((ms) => `${fmt(ms)} ms`).join(", ")})`,
    ];
    console.log(lines.join("\n"));
  } catch (error) {
    // A load process that lost its connections usually means its instance died: say which and why.
    const dead = instances.filter((s) => s.child.proc.exitCode !== null || s.child.proc.signalCode);
    if (dead.length === 0) throw error;
    throw new BenchError(
      `${(error as Error).message}\n${dead.map((s) => `${s.name} exited (${s.child.proc.exitCode ?? s.child.proc.signalCode}):\n${indent(s.child.tail())}`).join("\n")}`,
    );
  } finally {
    for (const l of loads) {
      try {
        l.write("exit");
      } catch {
        // Already gone.
      }
    }
    await Promise.all(loads.map((l) => Promise.race([l.proc.exited, Bun.sleep(10_000)])));
    for (const l of loads) await stopChild(l, 1000);
    await Promise.all(instances.map((s) => stopChild(s.child)));
    client?.disconnect();
    if (redis) await stopRedis(redis);
  }
}

try {
  await main();
  process.exit(0);
} catch (error) {
  console.error(`scale benchmark failed: ${error instanceof BenchError ? error.message : (error as Error).stack}`);
  process.exit(1);
}
