// Starts a real Redis Cluster (Debian's redis-server 7) of 3 masters with one replica each, on free
// loopback ports in a private temp dir, created by `redis-cli --cluster create`. A short
// cluster-node-timeout makes a failover take about two seconds instead of the default fifteen.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import Redis, { Cluster } from "ioredis";
import { freePort } from "./binary";

export interface ClusterNode {
  port: number;
  proc: Subprocess;
}

export interface TestCluster {
  /** REDIS_CLUSTER_NODES: every node as a seed. */
  seeds: string;
  ports: number[];
  /** A fresh key prefix for one test. */
  prefix(): string;
  /** A cluster client for the test's own reads and writes. */
  client(): Cluster;
  /** A plain connection to one node. */
  node(port: number): Redis;
  /** Ports of the masters that own slots now. */
  masters(): Promise<number[]>;
  /** Port of the master that owns `key`'s slot now. */
  masterOf(key: string): Promise<number>;
  /** Port of the replica of the master on `port`. */
  replicaOf(masterPort: number): Promise<number>;
  /**
   * Moves one slot to the master on `toPort` the way `redis-cli --cluster reshard` does: IMPORTING
   * and MIGRATING, then its keys MIGRATEd in batches of `batch` (calling `between` before each, so a
   * test can let traffic run while the slot is half moved), then SETSLOT NODE on every master.
   */
  moveSlot(slot: number, toPort: number, between?: () => Promise<void>, batch?: number): Promise<void>;
  /** SIGKILL of one node. */
  kill(port: number): Promise<void>;
  /** SIGSTOP / SIGCONT of one node. */
  pause(port: number): void;
  resume(port: number): void;
  /**
   * Waits until every live node reports cluster_state:ok and each of the 3 shards has a live master
   * (and, with `replicas`, an online replica that has synced).
   */
  waitHealthy(options?: { timeoutMs?: number; replicas?: boolean }): Promise<void>;
  stop(): Promise<void>;
}

let prefixes = 0;
export const NODE_TIMEOUT_MS = 1000;

export async function startRedisCluster(): Promise<TestCluster> {
  const dir = mkdtempSync(join(tmpdir(), "chat-test-cluster-"));
  const nodes = new Map<number, ClusterNode>();
  const connections: (Redis | Cluster)[] = [];
  const stop = async () => {
    for (const c of connections) c.disconnect();
    for (const node of nodes.values()) {
      node.proc.kill("SIGCONT");
      node.proc.kill("SIGKILL");
    }
    await Promise.all([...nodes.values()].map((n) => n.proc.exited));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < 6; i++) {
      const port = freePort();
      const nodeDir = join(dir, String(port));
      mkdirSync(nodeDir);
      const proc = Bun.spawn(
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
          "--cluster-config-file",
          "nodes.conf",
          "--cluster-node-timeout",
          String(NODE_TIMEOUT_MS),
          "--appendonly",
          "no",
          "--save",
          "",
          "--protected-mode",
          "no",
        ],
        { stdout: "ignore", stderr: "ignore" },
      );
      nodes.set(port, { port, proc });
    }
    const ports = [...nodes.keys()];
    for (const port of ports) await waitAnswers(port);
    const create = Bun.spawn(
      [
        "redis-cli",
        "--cluster",
        "create",
        ...ports.map((p) => `127.0.0.1:${p}`),
        "--cluster-replicas",
        "1",
        "--cluster-yes",
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    if ((await create.exited) !== 0)
      throw new Error(`redis-cli --cluster create failed: ${await new Response(create.stderr).text()}`);

    const node = (port: number) => {
      const c = new Redis(port, "127.0.0.1", { maxRetriesPerRequest: 1, retryStrategy: () => null });
      c.on("error", () => {});
      connections.push(c);
      return c;
    };
    const shards = async () => {
      for (const port of ports) {
        if (nodes.get(port)?.proc.exitCode !== null || nodes.get(port)?.proc.signalCode) continue;
        try {
          return (await node(port).cluster("SHARDS")) as unknown[];
        } catch {}
      }
      throw new Error("no node of the cluster answers");
    };
    const ownerOf = async (slot: number) => {
      for (const shard of parseShards(await shards()))
        if (shard.slots.some(([from, to]) => slot >= from && slot <= to)) return shard.master;
      throw new Error(`no master owns slot ${slot}`);
    };
    const cluster: TestCluster = {
      seeds: ports.map((p) => `127.0.0.1:${p}`).join(","),
      ports,
      prefix: () => `c${process.pid}-${++prefixes}:`,
      client: () => {
        const c = new Cluster(
          ports.map((port) => ({ host: "127.0.0.1", port })),
          { slotsRefreshInterval: 500 },
        );
        c.on("error", () => {});
        connections.push(c);
        return c;
      },
      node,
      masters: async () =>
        parseShards(await shards())
          .filter((s) => s.slots.length > 0)
          .map((s) => s.master),
      masterOf: async (key) =>
        ownerOf((await node(ports.find((p) => alive(nodes, p))!).cluster("KEYSLOT", key)) as number),
      replicaOf: async (masterPort) => {
        for (const shard of parseShards(await shards()))
          if (shard.master === masterPort && shard.replicas.length > 0) return shard.replicas[0]!;
        throw new Error(`no replica of ${masterPort}`);
      },
      moveSlot: async (slot, toPort, between = async () => {}, batch = 10) => {
        const fromPort = await ownerOf(slot);
        if (fromPort === toPort) throw new Error(`slot ${slot} is already on ${toPort}`);
        const id = async (port: number) => String(await node(port).cluster("MYID"));
        const [fromId, toId] = await Promise.all([id(fromPort), id(toPort)]);
        await node(toPort).cluster("SETSLOT", slot, "IMPORTING", fromId);
        await node(fromPort).cluster("SETSLOT", slot, "MIGRATING", toId);
        for (;;) {
          const keys = (await node(fromPort).cluster("GETKEYSINSLOT", slot, batch)) as string[];
          if (keys.length === 0) break;
          await between();
          await node(fromPort).migrate("127.0.0.1", toPort, "", 0, 5000, "KEYS", ...keys);
        }
        await node(toPort).cluster("SETSLOT", slot, "NODE", toId);
        await node(fromPort).cluster("SETSLOT", slot, "NODE", toId);
        for (const shard of parseShards(await shards()))
          if (shard.master !== fromPort && shard.master !== toPort)
            await node(shard.master).cluster("SETSLOT", slot, "NODE", toId);
      },
      kill: async (port) => {
        const n = nodes.get(port)!;
        n.proc.kill("SIGKILL");
        await n.proc.exited;
      },
      pause: (port) => nodes.get(port)!.proc.kill("SIGSTOP"),
      resume: (port) => nodes.get(port)!.proc.kill("SIGCONT"),
      waitHealthy: async ({ timeoutMs = 20_000, replicas = false } = {}) => {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const ok = await Promise.all(
            ports
              .filter((p) => alive(nodes, p))
              .map(async (p) => {
                try {
                  const info = (await node(p).cluster("INFO")) as string;
                  return info.includes("cluster_state:ok");
                } catch {
                  return false;
                }
              }),
          );
          let masters = 0;
          try {
            masters = parseShards(await shards()).filter(
              (s) => s.slots.length > 0 && alive(nodes, s.master) && (!replicas || s.replicas.length > 0),
            ).length;
          } catch {}
          if (ok.every(Boolean) && masters === 3) return;
          if (Date.now() > deadline) throw new Error("the redis cluster did not become healthy");
          await Bun.sleep(50);
        }
      },
      stop,
    };
    await cluster.waitHealthy({ replicas: true });
    return cluster;
  } catch (error) {
    await stop();
    throw error;
  }
}

function alive(nodes: Map<number, ClusterNode>, port: number) {
  const proc = nodes.get(port)?.proc;
  return proc !== undefined && proc.exitCode === null && proc.signalCode === null;
}

async function waitAnswers(port: number) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const probe = new Redis(port, "127.0.0.1", {
      lazyConnect: true,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
    });
    probe.on("error", () => {});
    try {
      await probe.connect();
      await probe.ping();
      probe.disconnect();
      return;
    } catch {
      probe.disconnect();
      if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not start`);
      await Bun.sleep(25);
    }
  }
}

interface Shard {
  slots: [number, number][];
  master: number;
  replicas: number[];
}

/** CLUSTER SHARDS: per shard its slot ranges and nodes, the master the one with role master and health online. */
function parseShards(reply: unknown[]): Shard[] {
  const out: Shard[] = [];
  for (const raw of reply) {
    const shard = toObject(raw as unknown[]);
    const flat = (shard.slots as (number | string)[]).map(Number);
    const slots: [number, number][] = [];
    for (let i = 0; i < flat.length; i += 2) slots.push([flat[i]!, flat[i + 1]!]);
    const nodes = (shard.nodes as unknown[][]).map(toObject);
    const master = nodes.find((n) => n.role === "master" && n.health === "online");
    const replicas = nodes.filter((n) => n.role === "replica" && n.health === "online").map((n) => Number(n.port));
    if (master) out.push({ slots, master: Number(master.port), replicas });
  }
  return out;
}

function toObject(list: unknown[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i < list.length; i += 2) out[String(list[i])] = list[i + 1];
  return out;
}
