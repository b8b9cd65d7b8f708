// Every Grafana panel query, run against a real Prometheus scraping two real instances (blue and
// green, the compiled binary, sharing a real Redis) that carry real WebSocket traffic, and a real
// redis_exporter (Debian's prometheus-redis-exporter) in front of that Redis. Every query must parse;
// the panels about connections, messages, latency, errors, the backplane and Redis must return data.
// Traefik panels cannot have data here (no Traefik runs) but must still parse. The front-door job,
// which in the stack reads /metrics through Traefik's chat-active service, reads blue's /metrics
// directly: a double of Traefik routing to blue, the color active-color.yml names in the repository.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Subprocess } from "bun";
import { parse, stringify } from "yaml";
import { freePort, type RunningBinary, startBinary } from "../helpers/binary";
import { TestClient } from "../helpers/client";
import { connId } from "../helpers/server";
import { DASHBOARDS_DIR, PROMETHEUS_CONFIG, RULES_DIR, testTargets, tool } from "./paths";

/** Panels that must return data, by dashboard uid: every one of their queries must be non-empty. */
const MUST_HAVE_DATA: Record<string, string[]> = {
  "realtime-overview": [
    "Connections per color and instance",
    "Connections of the limit",
    "Messages per second by direction and type",
    "Message latency p50, p95, p99",
    "Errors by code",
    "Disconnects by close code",
    "Upgrades rejected by reason",
    "Resumes, recovered or not",
    "Backplane lag p50, p95, p99",
    "Redis reachable",
    "Redis memory of maxmemory",
    "Redis memory",
    "Redis evictions and rejected connections",
    "Redis clients and commands",
    "Redis keys",
    "Redis persistence and replication",
  ],
  "realtime-deploys": ["Active color", "Connections by color", "Draining instances", "Version by color"],
};

/** Values Grafana would put in place of its variables. `$1` and the like in label_replace stay. */
const VARIABLES: Record<string, string> = {
  __rate_interval: "30s",
  __interval: "5s",
  __range: "5m",
  color: ".*",
  instance: ".*",
  router: ".*",
  service: ".*",
};
const substitute = (expr: string) =>
  expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (whole, a, b) => VARIABLES[(a ?? b) as string] ?? whole);

interface Query {
  dashboard: string;
  panel: string;
  expr: string;
}

/** Every `expr` of a dashboard (panel targets, annotations), with the title of what holds it. */
function queriesOf(dashboard: any): Query[] {
  const found: Query[] = [];
  const walk = (node: any, title: string) => {
    if (Array.isArray(node)) {
      for (const n of node) walk(n, title);
      return;
    }
    if (!node || typeof node !== "object") return;
    const here = typeof node.title === "string" ? node.title : typeof node.name === "string" ? node.name : title;
    if (typeof node.expr === "string") found.push({ dashboard: dashboard.uid, panel: here, expr: node.expr });
    for (const value of Object.values(node)) walk(value, here);
  };
  walk(dashboard.panels, "");
  walk(dashboard.annotations, "");
  return found;
}

/** `label_values(selector, label)` of the template variables, as a PromQL query listing the values. */
function variableQueries(dashboard: any): Query[] {
  return (dashboard.templating?.list ?? [])
    .filter((v: any) => v.type === "query")
    .map((v: any) => {
      const text: string = typeof v.query === "string" ? v.query : v.query.query;
      const m = /^label_values\((.*),\s*(\w+)\)$/.exec(text.trim());
      if (!m) throw new Error(`variable ${v.name} of ${dashboard.uid}: unsupported query ${text}`);
      return { dashboard: dashboard.uid, panel: `variable ${v.name}`, expr: `count by (${m[2]}) (${m[1]})` };
    });
}

const dashboards = [...new Bun.Glob("*.json").scanSync({ cwd: DASHBOARDS_DIR })]
  .sort()
  .map((file) => JSON.parse(readFileSync(join(DASHBOARDS_DIR, file), "utf8")));

let redis: Subprocess<"ignore", "pipe", "pipe"> | undefined;
let exporter: Subprocess<"ignore", "pipe", "pipe"> | undefined;
let blue: RunningBinary;
let green: RunningBinary;
let prometheus: Subprocess<"ignore", "pipe", "pipe"> | undefined;
let promUrl = "";
let promOutput = "";
let targetsFile = "";
let dataDir = "";
const clients: TestClient[] = [];
let traffic: ReturnType<typeof setInterval> | undefined;

async function promQuery(expr: string): Promise<{
  status: string;
  error?: string;
  data?: { result: { metric: Record<string, string>; value: [number, string] }[] };
}> {
  const res = await fetch(`${promUrl}/api/v1/query?${new URLSearchParams({ query: expr })}`);
  return (await res.json()) as any;
}

/** Polls `check` until it returns true or the deadline passes, then fails with `what`. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let delay = 100;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}\nprometheus output:\n${promOutput.slice(-3000)}`);
    await Bun.sleep(delay);
    delay = Math.min(delay * 2, 500);
  }
}

/** Replaces the targets file the way the deploy script does: a new file renamed over it. */
function replaceTargets(text: string) {
  const tmp = join(dirname(targetsFile), ".websocket-targets.tmp");
  writeFileSync(tmp, text);
  renameSync(tmp, targetsFile);
}

/**
 * The real config's websocket, redis and front-door jobs: the websocket job reads the test targets
 * file, the others point at the test's exporter and at blue; same job names and target labels.
 */
function testConfig(targetsPath: string, promPort: number, exporterPort: number, bluePort: number): string {
  const real = parse(readFileSync(PROMETHEUS_CONFIG, "utf8"));
  const job = real.scrape_configs.find((j: any) => j.job_name === "websocket");
  expect(job.file_sd_configs).toEqual([{ files: ["targets/websocket.yml"], refresh_interval: "30s" }]);
  job.file_sd_configs[0].files = [targetsPath];
  const self = real.scrape_configs.find((j: any) => j.job_name === "prometheus");
  self.static_configs[0].targets = [`127.0.0.1:${promPort}`];
  const redisJob = real.scrape_configs.find((j: any) => j.job_name === "redis");
  redisJob.static_configs[0].targets = [`127.0.0.1:${exporterPort}`];
  // Traefik strips /front-door before forwarding to the active color; the double goes straight there.
  const frontDoor = real.scrape_configs.find((j: any) => j.job_name === "front-door");
  expect(frontDoor.metrics_path).toBe("/front-door/metrics");
  frontDoor.metrics_path = "/metrics";
  frontDoor.static_configs[0].targets = [`127.0.0.1:${bluePort}`];
  return stringify({
    global: {
      scrape_interval: "1s",
      scrape_timeout: "1s",
      evaluation_interval: "1s",
      external_labels: real.global.external_labels,
    },
    rule_files: [join(RULES_DIR, "*.yml")],
    scrape_configs: [self, job, redisJob, frontDoor],
  });
}

beforeAll(async () => {
  const prometheusBin = tool("prometheus");
  const redisBin = Bun.which("redis-server");
  if (!redisBin) throw new Error("redis-server is not installed: scripts/test.sh installs it");
  const redisPort = freePort();
  // maxmemory and its policy as in docker-compose.yml (smaller), so the maxmemory panels have a ratio.
  redis = Bun.spawn(
    [
      redisBin,
      ...["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      ...["--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru"],
    ],
    {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  await until("redis to answer", async () => {
    const socket = await Bun.connect({ hostname: "127.0.0.1", port: redisPort, socket: { data() {} } });
    socket.end();
    return true;
  });
  const exporterPort = freePort();
  exporter = Bun.spawn(
    [
      tool("prometheus-redis-exporter"),
      `-redis.addr=redis://127.0.0.1:${redisPort}`,
      `-web.listen-address=127.0.0.1:${exporterPort}`,
    ],
    { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
  );
  await until("redis_exporter to answer", async () => (await fetch(`http://127.0.0.1:${exporterPort}/metrics`)).ok);
  const shared = {
    MAX_CONNECTIONS: "100",
    LOG_LEVEL: "warn",
    REDIS_URL: `redis://127.0.0.1:${redisPort}`,
    REDIS_KEY_PREFIX: `live-${process.pid}:`,
  };
  [blue, green] = await Promise.all([
    startBinary({ ...shared, COLOR: "blue", INSTANCE_ID: "blue-1" }),
    startBinary({ ...shared, COLOR: "green", INSTANCE_ID: "green-1" }),
  ]);

  dataDir = mkdtempSync(join(tmpdir(), "prometheus-live-"));
  const promPort = freePort();
  const configFile = join(dataDir, "prometheus.yml");
  mkdirSync(join(dataDir, "targets"));
  targetsFile = join(dataDir, "targets", "websocket.yml");
  writeFileSync(targetsFile, testTargets({ blue: blue.port, green: green.port }));
  writeFileSync(configFile, testConfig(targetsFile, promPort, exporterPort, blue.port));
  promUrl = `http://127.0.0.1:${promPort}`;
  prometheus = Bun.spawn(
    [
      prometheusBin,
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dataDir, "data")}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
    ],
    { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
  );
  void (async () => {
    for await (const chunk of prometheus!.stderr) promOutput += new TextDecoder().decode(chunk);
  })();
  await until("prometheus to be ready", async () => (await fetch(`${promUrl}/-/ready`)).ok);

  // Traffic: on each instance, two members chat in a room; one sends to a room it never joined
  // (not_in_room errors) and one malformed frame; a client resumes with lastOffset; one leaves.
  // Both instances share one room, so every message also crosses the Redis backplane.
  const room = "lobby";
  for (const server of [blue, green]) {
    const url = (user: string) => `ws://127.0.0.1:${server.port}/ws/chat/${connId()}?user=${user}`;
    const alice = await TestClient.connect(url("alice"));
    const bob = await TestClient.connect(url("bob"));
    expect((await alice.request({ type: "join", room })).ok).toBe(true);
    expect((await bob.request({ type: "join", room })).ok).toBe(true);
    expect((await alice.request({ type: "message", room, text: "hello", clientMsgId: "hello-1" })).ok).toBe(true);
    alice.send("this is not json");
    await alice.next("error");
    const carol = await TestClient.connect(url("carol"));
    expect((await carol.request({ type: "join", room, lastOffset: 0 })).ok).toBe(true);
    await carol.close();
    // An upgrade refused before the handshake: an invalid connection id.
    const refused = new WebSocket(`ws://127.0.0.1:${server.port}/ws/chat/x`);
    await new Promise((resolve) => refused.addEventListener("close", resolve, { once: true }));
    clients.push(alice, bob);
  }
  // Keep messages and errors flowing so that rates over the window are non-zero.
  let n = 0;
  traffic = setInterval(() => {
    n++;
    for (let i = 0; i < clients.length; i += 2) {
      clients[i]!.send({ type: "message", room, text: `tick ${n}`, clientMsgId: `tick-${i}-${n}` });
      clients[i + 1]!.send({ type: "message", room: "never-joined", text: "x", clientMsgId: `lost-${n}` });
    }
  }, 100);
}, 30_000);

afterAll(async () => {
  if (traffic) clearInterval(traffic);
  for (const c of clients) c.ws.close();
  if (prometheus && prometheus.exitCode === null) {
    prometheus.kill("SIGTERM");
    await prometheus.exited;
  }
  await Promise.all([blue?.stop(), green?.stop()]);
  if (exporter && exporter.exitCode === null) {
    exporter.kill("SIGTERM");
    await exporter.exited;
  }
  if (redis && redis.exitCode === null) {
    redis.kill("SIGTERM");
    await redis.exited;
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe("dashboards against live data", () => {
  test("Prometheus scrapes both colors with the target labels of the real config", async () => {
    await until("both instances to be scraped", async () => {
      const r = await promQuery('up{job="websocket"} == 1');
      return r.data!.result.length === 2;
    });
    const r = await promQuery('app_info{job="websocket"}');
    const seen = r
      .data!.result.map((s) => `${s.metric.color} ${s.metric.instance} ${s.metric.exported_instance}`)
      .sort();
    expect(seen).toEqual(["blue websocket-blue blue-1", "green websocket-green green-1"]);
  }, 20_000);

  test("Active color names the color the front door reaches, with only app_info kept from that scrape", async () => {
    const active = dashboards
      .flatMap((d) => queriesOf(d))
      .find((q) => q.dashboard === "realtime-deploys" && q.panel === "Active color")!;
    await until("the front-door job to be scraped", async () => {
      const r = await promQuery(substitute(active.expr));
      return r.data!.result.length > 0;
    });
    const r = await promQuery(substitute(active.expr));
    expect(r.data!.result.map((s) => s.metric.color)).toEqual(["blue"]);
    const kept = await promQuery('count by (__name__) ({job="front-door"})');
    expect(kept.data!.result.map((s) => s.metric.__name__).sort()).toEqual([
      "app_info",
      "scrape_duration_seconds",
      "scrape_samples_post_metric_relabeling",
      "scrape_samples_scraped",
      "scrape_series_added",
      "up",
    ]);
  }, 20_000);

  test("every panel, annotation and variable query parses; the core panels return data", async () => {
    const queries = dashboards.flatMap((d) => [...queriesOf(d), ...variableQueries(d)]);
    expect(queries.length).toBeGreaterThan(30);
    for (const [uid, titles] of Object.entries(MUST_HAVE_DATA)) {
      const known = new Set(queries.filter((q) => q.dashboard === uid).map((q) => q.panel));
      for (const title of titles)
        expect(`${uid}: ${known.has(title) ? title : `missing panel ${title}`}`).toBe(`${uid}: ${title}`);
    }
    const required = queries.filter(
      (q) =>
        MUST_HAVE_DATA[q.dashboard]?.includes(q.panel) ||
        q.panel.startsWith("variable color") ||
        q.panel.startsWith("variable instance"),
    );

    // Wait until every required query has data: rates need two scrapes after the traffic began.
    const empty = async () => {
      const missing: string[] = [];
      for (const q of required) {
        const r = await promQuery(substitute(q.expr));
        if (r.status !== "success" || r.data!.result.length === 0)
          missing.push(`${q.dashboard} / ${q.panel}: ${q.expr}`);
      }
      return missing;
    };
    let missing: string[] = [];
    await until("the core panels to return data", async () => (missing = await empty()).length === 0, 40_000).catch(
      (error) => {
        throw new Error(`${(error as Error).message.split("\n")[0]}; still empty:\n  ${missing.join("\n  ")}`);
      },
    );

    const failures: string[] = [];
    const withData = new Map<string, [number, number]>();
    for (const q of queries) {
      const r = await promQuery(substitute(q.expr));
      if (r.status !== "success") failures.push(`${q.dashboard} / ${q.panel}: ${r.error}\n    ${q.expr}`);
      const key = `${q.dashboard} / ${q.panel}`;
      const [hit, all] = withData.get(key) ?? [0, 0];
      withData.set(key, [hit + (r.data?.result.length ? 1 : 0), all + 1]);
    }
    const report = [...withData].map(([key, [hit, all]]) => `${hit}/${all} queries with data  ${key}`);
    console.log(`panel queries (${queries.length}):\n  ${report.join("\n  ")}`);
    expect(failures).toEqual([]);
    expect(await empty()).toEqual([]);
  }, 40_000);

  test("the alert rules evaluate without errors on the live series", async () => {
    await until("every rule group to be evaluated", async () => {
      const res = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as any;
      const rules = res.data.groups.flatMap((g: any) => g.rules);
      return rules.length >= 10 && rules.every((r: any) => r.lastEvaluation && !r.lastEvaluation.startsWith("0001"));
    });
    const res = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as any;
    const unhealthy = res.data.groups
      .flatMap((g: any) => g.rules)
      .filter((r: any) => r.health !== "ok")
      .map((r: any) => `${r.name}: ${r.lastError}`);
    expect(unhealthy).toEqual([]);
  }, 15_000);

  // Last: it stops green. ServerDown is `up == 0`; what a deploy does to the targets file decides
  // whether a stopped color can match it.
  test("a color stopped and then dropped from the targets file is no longer scraped, so ServerDown cannot fire for it", async () => {
    await green.stop();
    await until("green to be seen down", async () => {
      const r = await promQuery('up{job="websocket"} == 0');
      return r.data!.result.map((s) => s.metric.color).join() === "green";
    });
    replaceTargets(testTargets({ blue: blue.port, green: green.port }, ["blue"]));
    await until("green to leave the scrape targets", async () => {
      const down = await promQuery("up == 0");
      const up = await promQuery('up{job="websocket"}');
      return down.data!.result.length === 0 && up.data!.result.map((s) => s.metric.color).join() === "blue";
    });
  }, 30_000);
});
