import { readFileSync } from "node:fs";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { Config } from "../config";
import { FastHistogram } from "./fast-histogram";

/** Where the kernel states the memory limit of this process's cgroup: v2, then v1. */
const CGROUP_MEMORY_LIMIT_FILES = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"];

/**
 * The memory limit of the cgroup this process runs in (in a container, the container's limit), or
 * undefined without one: cgroup v2 writes "max", v1 a number near 2^63.
 */
export function cgroupMemoryLimit(read: (path: string) => string = (p) => readFileSync(p, "utf8")): number | undefined {
  for (const path of CGROUP_MEMORY_LIMIT_FILES) {
    let text: string;
    try {
      text = read(path).trim();
    } catch {
      continue;
    }
    const bytes = Number(text);
    return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : undefined;
  }
  return undefined;
}

/**
 * Every metric the server exports, on a registry of its own so that two app instances in one
 * process (as in tests) never share counters.
 */
export function createMetrics(
  config: Pick<Config, "version" | "color" | "instanceId" | "maxConnections" | "redisUrl"> &
    Partial<Pick<Config, "redisCluster">>,
) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const connections = new Gauge({
    name: "websocket_connections_total",
    help: "Open WebSocket connections (a gauge; the name is kept for existing dashboards)",
    registers: [registry],
  });
  // Frames are counted in plain numbers on the hot path and handed to prom-client when scraped:
  // a labelled inc() hashes its labels on every call, which showed in the broadcast benchmark.
  const framesIn = new Map<string, number>();
  const framesOut = new Map<string, number>();
  new Counter({
    name: "websocket_messages_total",
    help: "WebSocket frames by direction (in, out) and frame type",
    labelNames: ["direction", "type"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [type, n] of framesIn) this.labels("in", type).inc(n);
      for (const [type, n] of framesOut) this.labels("out", type).inc(n);
    },
  });
  const latency = new FastHistogram(
    "websocket_message_latency_seconds",
    "Time from a client frame received to its fan-out done",
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registry,
  );
  const connectionDuration = new Histogram({
    name: "websocket_connection_duration_seconds",
    help: "How long WebSocket connections stayed open",
    buckets: [1, 10, 60, 300, 900, 1800, 3600, 7200, 21600, 86400],
    registers: [registry],
  });
  const errors = new Counter({
    name: "websocket_errors_total",
    help: "Error frames sent, by error code",
    labelNames: ["code"] as const,
    registers: [registry],
  });
  const disconnects = new Counter({
    name: "websocket_disconnects_total",
    help: "Closed WebSocket connections, by close code",
    labelNames: ["code"] as const,
    registers: [registry],
  });
  const maxConnections = new Gauge({
    name: "websocket_max_connections",
    help: "Configured MAX_CONNECTIONS of this instance",
    registers: [registry],
  });
  maxConnections.set(config.maxConnections);
  const rejected = new Counter({
    name: "websocket_upgrades_rejected_total",
    help: "WebSocket upgrades refused before the handshake, by reason",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  const rateLimited = new Counter({
    name: "websocket_rate_limited_total",
    help: "Requests refused by a rate limit: ip (upgrades per client IP), user (connections per user), frames (frames per connection)",
    labelNames: ["limit"] as const,
    registers: [registry],
  });
  const slowConsumers = new Counter({
    name: "websocket_slow_consumers_total",
    help: "Connections closed with 4008 because the client stopped reading",
    registers: [registry],
  });
  const draining = new Gauge({
    name: "websocket_draining",
    help: "1 while this instance drains its connections for shutdown",
    registers: [registry],
  });
  const resumes = new Counter({
    name: "resume_total",
    help: "Joins with lastOffset, by whether every missed message was replayed",
    labelNames: ["recovered"] as const,
    registers: [registry],
  });
  const inboxResumes = new Counter({
    name: "inbox_resume_total",
    help: "Inbox resumes (the inbox frame), by whether every direct message after lastOffset was replayed",
    labelNames: ["recovered"] as const,
    registers: [registry],
  });
  const info = new Gauge({
    name: "app_info",
    help: "Version, color and instance of this server (always 1)",
    labelNames: ["version", "color", "instance"] as const,
    registers: [registry],
  });
  info.labels(config.version, config.color, config.instanceId).set(1);

  const backplanePublish = new Counter({
    name: "backplane_publish_total",
    help: "Envelopes published to other instances through Redis",
    registers: [registry],
  });
  const backplaneErrors = new Counter({
    name: "backplane_errors_total",
    help: "Redis failures, by operation (connection, publish, subscribe, decode) or store (history, inbox, presence, sessions, reads)",
    labelNames: ["op"] as const,
    registers: [registry],
  });
  const backplaneReconnects = new Counter({
    name: "backplane_reconnects_total",
    help: "Redis connections re-established after a loss",
    registers: [registry],
  });
  const backplaneDropped = new Counter({
    name: "backplane_dropped_total",
    help: "Envelopes not sent to other instances because Redis was unreachable",
    registers: [registry],
  });
  // Observed for every envelope received, so on the hot path like the frame latency.
  const backplaneLag = new FastHistogram(
    "backplane_lag_seconds",
    "Time from publish on one instance to receipt on another",
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registry,
  );
  const backplaneUp = new Gauge({
    name: "backplane_up",
    help: "1 while Redis (every master of a cluster) is reachable, 0 while it is not; absent without Redis",
    // Registered only with Redis configured, so a memory-only instance never looks like an outage.
    registers: config.redisUrl || config.redisCluster ? [registry] : [],
  });
  // The memory alert compares resident memory with this, so its threshold follows the limit set in
  // docker-compose.yml instead of repeating it. Registered only under a limit: without one there is
  // nothing to run out of, and a 0 would read as a limit of nothing.
  const memoryLimit = cgroupMemoryLimit();
  new Gauge({
    name: "process_memory_limit_bytes",
    help: "Memory limit of this process's cgroup (the container limit); absent without a limit",
    registers: memoryLimit === undefined ? [] : [registry],
    collect() {
      this.set(cgroupMemoryLimit() ?? memoryLimit ?? 0);
    },
  });
  const gapsFilled = new Counter({
    name: "backplane_gap_messages_total",
    help: "Room messages missed on pub/sub and delivered from the stored history instead",
    registers: [registry],
  });

  const storeUnavailable = new Counter({
    name: "store_unavailable_total",
    help: "Store calls refused with `unavailable` because Redis was down, hung or timed out, by store",
    labelNames: ["store"] as const,
    registers: [registry],
  });
  const epochResets = new Counter({
    name: "history_epoch_resets_total",
    help: "Rooms given a new epoch because Redis held fewer of their messages than this instance had seen",
    registers: [registry],
  });

  return {
    registry,
    connections,
    latency,
    connectionDuration,
    errors,
    disconnects,
    rejected,
    rateLimited,
    slowConsumers,
    draining,
    resumes,
    inboxResumes,
    backplanePublish,
    backplaneErrors,
    backplaneReconnects,
    backplaneDropped,
    backplaneLag,
    backplaneUp,
    gapsFilled,
    storeUnavailable,
    epochResets,
    countIn(type: string) {
      framesIn.set(type, (framesIn.get(type) ?? 0) + 1);
    },
    countOut(type: string, n = 1) {
      if (n > 0) framesOut.set(type, (framesOut.get(type) ?? 0) + n);
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
