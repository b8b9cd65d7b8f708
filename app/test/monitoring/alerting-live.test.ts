// Alerts that reach someone, end to end: a real Prometheus scrapes two instances of the compiled
// binary and evaluates the repository's rules; a real Alertmanager, started through the repository's
// entrypoint.sh on the repository's alertmanager.yml, notifies a webhook receiver run by this test.
// Kill an instance: ServerDown is paged within its `for` plus evaluation and group wait, with an
// absolute runbook link, and no other alert of that instance is notified (inhibition). Restart it:
// the resolved notification arrives. Stop Redis: redis_exporter (Debian's) reports it, RedisDown is
// paged, and the instances' BackplaneDown is held back.
//
// The configs are test copies generated in a temporary directory, never the repository's files:
// intervals of one second, every `for` divided by 20 (ServerDown's 1m becomes 3s), Alertmanager's
// group_wait and group_interval shortened, webhook URLs pointed at this test.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server, Subprocess } from "bun";
import { parse, stringify } from "yaml";
import { freePort, type RunningBinary, startBinary } from "../helpers/binary";
import {
  ALERTMANAGER_CONFIG,
  ALERTMANAGER_ENTRYPOINT,
  PROMETHEUS_CONFIG,
  RULES_DIR,
  RUNBOOK,
  testTargets,
  tool,
  ymlFiles,
} from "./paths";

/** Every `for` of the test copy of the rules is this many times shorter. */
const FOR_SCALE = 20;
const SCRAPE_S = 1;
const EVAL_S = 1;
// Long enough, as the 30s of the real config is, for an inhibiting alert evaluated a scrape later
// than the alerts it holds back (RedisDown against BackplaneDown) to reach Alertmanager first.
const GROUP_WAIT_S = 3;
const GROUP_INTERVAL_S = 2;

interface Notification {
  receiver: string;
  status: "firing" | "resolved";
  alerts: { status: string; labels: Record<string, string>; annotations: Record<string, string> }[];
  externalURL: string;
  at: number;
}

const realPrometheus = parse(readFileSync(PROMETHEUS_CONFIG, "utf8"));
const runbookBase: string = realPrometheus.global.external_labels.runbook_base;

let dir = "";
let blue: RunningBinary;
let green: RunningBinary;
let blueEnv: Record<string, string> = {};
let prometheus: Subprocess<"ignore", "pipe", "pipe"> | undefined;
let alertmanager: Subprocess<"ignore", "pipe", "pipe"> | undefined;
let redis: Subprocess<"ignore", "pipe", "pipe"> | undefined;
let exporter: Subprocess<"ignore", "pipe", "pipe"> | undefined;
let webhook: Server<undefined> | undefined;
let promUrl = "";
let amUrl = "";
let logs = "";
const notifications: Notification[] = [];
let serverDownFor = 0;

/** Polls `check` until it returns true or the deadline passes, then fails with `what`. */
async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let delay = 50;
  for (;;) {
    if (await Promise.resolve(check()).catch(() => false)) return;
    if (Date.now() > deadline)
      throw new Error(
        `timed out waiting for ${what}\nnotifications: ${JSON.stringify(notifications, null, 1).slice(-3000)}\n` +
          `prometheus and alertmanager output:\n${logs.slice(-4000)}`,
      );
    await Bun.sleep(delay);
    delay = Math.min(delay * 2, 250);
  }
}

function seconds(duration: string): number {
  const units: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };
  let total = 0;
  for (const [, n, unit] of duration.matchAll(/(\d+)(ms|s|m|h|d)/g)) total += Number(n) * units[unit!]!;
  return total;
}

/** The repository's rule files with every `for` divided by FOR_SCALE, into `out`. */
function scaledRules(out: string) {
  for (const file of ymlFiles(RULES_DIR)) {
    const spec = parse(readFileSync(file, "utf8"));
    for (const group of spec.groups)
      for (const rule of group.rules) {
        if (!rule.for) continue;
        const scaled = Math.max(1, Math.round(seconds(rule.for) / FOR_SCALE));
        if (rule.alert === "ServerDown") serverDownFor = scaled;
        rule.for = `${scaled}s`;
      }
    writeFileSync(join(out, file.slice(file.lastIndexOf("/") + 1)), stringify(spec));
  }
  // A double of any other alert of the instance: it fires for the same outage, later than
  // ServerDown (as an alert on the instance's own metrics would, once they are stale), so the
  // inhibition rule is what keeps it from being notified.
  writeFileSync(
    join(out, "zz-test-companion.yml"),
    stringify({
      groups: [
        {
          name: "test-companion",
          rules: [
            {
              alert: "CompanionOfTheInstance",
              expr: 'up{job="websocket"} == 0',
              for: `${serverDownFor * 2}s`,
              labels: { severity: "warning" },
              annotations: { summary: "another alert of {{ $labels.instance }}" },
            },
          ],
        },
      ],
    }),
  );
}

function pump(proc: Subprocess<"ignore", "pipe", "pipe">, name: string) {
  for (const stream of [proc.stdout, proc.stderr])
    void (async () => {
      for await (const chunk of stream) logs += `[${name}] ${new TextDecoder().decode(chunk)}`;
    })();
}

async function amAlerts(): Promise<
  { labels: Record<string, string>; status: { state: string; inhibitedBy: string[] } }[]
> {
  return (await (await fetch(`${amUrl}/api/v2/alerts`)).json()) as any;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "alerting-live-"));
  mkdirSync(join(dir, "rules"));
  mkdirSync(join(dir, "targets"));
  mkdirSync(join(dir, "alertmanager"));

  webhook = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const body = (await req.json()) as Omit<Notification, "at">;
      notifications.push({ ...body, receiver: new URL(req.url).pathname.slice(1), at: Date.now() });
      return new Response("ok");
    },
  });

  const redisBin = Bun.which("redis-server");
  if (!redisBin) throw new Error("redis-server is not installed: scripts/test.sh installs it");
  const redisPort = freePort();
  redis = Bun.spawn(
    [redisBin, "--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
  );
  pump(redis, "redis");
  // The instances start once Redis answers: a refused first connection counts a backplane error,
  // and BackplaneDown would fire for it.
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
      // Within the scrape timeout, as docker-compose.yml sets it: an unreachable Redis is then
      // redis_up 0 (RedisDown), not a failed scrape of the exporter (ServerDown of job redis).
      "-connection-timeout=500ms",
    ],
    { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
  );
  pump(exporter, "redis_exporter");

  const shared = {
    MAX_CONNECTIONS: "100",
    LOG_LEVEL: "warn",
    REDIS_URL: `redis://127.0.0.1:${redisPort}`,
    REDIS_KEY_PREFIX: `alerting-${process.pid}:`,
  };
  blueEnv = { ...shared, COLOR: "blue", INSTANCE_ID: "blue-1", PORT: String(freePort()) };
  [blue, green] = await Promise.all([
    startBinary(blueEnv),
    startBinary({ ...shared, COLOR: "green", INSTANCE_ID: "green-1" }),
  ]);

  // Alertmanager: the repository's config with short group timings, through entrypoint.sh.
  const amPort = freePort();
  amUrl = `http://127.0.0.1:${amPort}/alertmanager`;
  const amConfig = parse(readFileSync(ALERTMANAGER_CONFIG, "utf8"));
  amConfig.route.group_wait = `${GROUP_WAIT_S}s`;
  amConfig.route.group_interval = `${GROUP_INTERVAL_S}s`;
  const amTemplate = join(dir, "alertmanager.template.yml");
  writeFileSync(amTemplate, stringify(amConfig));
  alertmanager = Bun.spawn(
    [
      "sh",
      ALERTMANAGER_ENTRYPOINT,
      `--storage.path=${join(dir, "alertmanager")}`,
      `--web.listen-address=127.0.0.1:${amPort}`,
      `--web.external-url=${amUrl}/`,
      "--cluster.listen-address=",
    ],
    {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        ALERTMANAGER_TEMPLATE: amTemplate,
        ALERTMANAGER_CONFIG: join(dir, "alertmanager.yml"),
        ALERTMANAGER_BIN: tool("prometheus-alertmanager"),
        ALERT_PAGE_WEBHOOK_URL: `http://127.0.0.1:${webhook.port}/page`,
        ALERT_TEAM_WEBHOOK_URL: `http://127.0.0.1:${webhook.port}/team`,
      },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  pump(alertmanager, "alertmanager");

  // Prometheus: the real websocket job, labels and external labels, sending to the test Alertmanager.
  scaledRules(join(dir, "rules"));
  writeFileSync(join(dir, "targets", "websocket.yml"), testTargets({ blue: blue.port, green: green.port }));
  const job = realPrometheus.scrape_configs.find((j: any) => j.job_name === "websocket");
  job.file_sd_configs[0].files = [join(dir, "targets", "websocket.yml")];
  const redisJob = realPrometheus.scrape_configs.find((j: any) => j.job_name === "redis");
  redisJob.static_configs[0].targets = [`127.0.0.1:${exporterPort}`];
  const alerting = structuredClone(realPrometheus.alerting);
  expect(alerting.alertmanagers[0].path_prefix).toBe("/alertmanager");
  alerting.alertmanagers[0].static_configs = [{ targets: [`127.0.0.1:${amPort}`] }];
  const promPort = freePort();
  promUrl = `http://127.0.0.1:${promPort}`;
  writeFileSync(
    join(dir, "prometheus.yml"),
    stringify({
      global: {
        scrape_interval: `${SCRAPE_S}s`,
        scrape_timeout: `${SCRAPE_S}s`,
        evaluation_interval: `${EVAL_S}s`,
        external_labels: realPrometheus.global.external_labels,
      },
      rule_files: [join(dir, "rules", "*.yml")],
      alerting,
      scrape_configs: [job, redisJob],
    }),
  );
  prometheus = Bun.spawn(
    [
      tool("prometheus"),
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
    ],
    { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
  );
  pump(prometheus, "prometheus");

  await until("alertmanager to be ready", async () => (await fetch(`${amUrl}/-/ready`)).ok);
  await until("prometheus to be ready", async () => (await fetch(`${promUrl}/-/ready`)).ok);
  await until("both instances to be scraped", async () => {
    const res = (await (await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent("up == 1")}`)).json()) as any;
    return res.data.result.length === 3;
  });
  await until("both instances to report Redis reachable", async () => {
    const query = encodeURIComponent('backplane_up == 1 or redis_up{job="redis"} == 1');
    const res = (await (await fetch(`${promUrl}/api/v1/query?query=${query}`)).json()) as any;
    return res.data.result.length === 3;
  });
  await until("prometheus to find the alertmanager", async () => {
    const res = (await (await fetch(`${promUrl}/api/v1/alertmanagers`)).json()) as any;
    return res.data.activeAlertmanagers.length === 1;
  });
}, 60_000);

afterAll(async () => {
  for (const proc of [prometheus, alertmanager])
    if (proc && proc.exitCode === null) {
      proc.kill("SIGTERM");
      await proc.exited;
    }
  await Promise.all([blue?.stop("SIGKILL"), green?.stop("SIGKILL")]);
  for (const proc of [exporter, redis])
    if (proc && proc.exitCode === null) {
      proc.kill("SIGKILL");
      await proc.exited;
    }
  webhook?.stop(true);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("alerts reach the receiver through Alertmanager", () => {
  const ofBlue = (n: Notification) => n.alerts.filter((a) => a.labels.instance === "websocket-blue");

  test("a killed instance pages ServerDown once, with a runbook link, and nothing else of it", async () => {
    expect(serverDownFor).toBe(3);
    const killedAt = Date.now();
    await blue.stop("SIGKILL");

    await until("the ServerDown page", () =>
      notifications.some((n) => n.status === "firing" && n.alerts.some((a) => a.labels.alertname === "ServerDown")),
    );
    const page = notifications.find((n) => n.alerts.some((a) => a.labels.alertname === "ServerDown"))!;
    // Within `for`, plus a scrape to see it down, an evaluation, and the group wait; the rest is slack
    // for a shared machine.
    expect((page.at - killedAt) / 1000).toBeLessThan(serverDownFor + SCRAPE_S + EVAL_S + GROUP_WAIT_S + 5);
    expect(page.receiver).toBe("page");
    expect(page.alerts).toHaveLength(1);
    const alert = page.alerts[0]!;
    expect(alert.labels).toMatchObject({
      alertname: "ServerDown",
      severity: "critical",
      job: "websocket",
      instance: "websocket-blue",
      color: "blue",
    });
    expect(alert.annotations.summary).toBe("websocket target websocket-blue is down");
    // A link someone can open from the page: absolute, http(s), to the runbook's section.
    const link = new URL(alert.annotations.runbook_url!);
    expect(link.protocol).toMatch(/^https?:$/);
    expect(`${link.origin}${link.pathname}`).toBe(runbookBase);
    expect(link.hash).toBe("#serverdown");
    expect(readFileSync(RUNBOOK, "utf8")).toMatch(/^## ServerDown$/m);

    // The companion alert reaches Alertmanager, which holds it back because of ServerDown.
    await until("the companion alert to be inhibited by ServerDown", async () =>
      (await amAlerts()).some(
        (a) =>
          a.labels.alertname === "CompanionOfTheInstance" &&
          a.labels.instance === "websocket-blue" &&
          a.status.state === "suppressed" &&
          a.status.inhibitedBy.length > 0,
      ),
    );
    // Proving an absence takes a bounded wait: twice the group wait and interval, long enough for
    // Alertmanager to have notified the companion's group had it not been inhibited.
    await Bun.sleep((GROUP_WAIT_S + GROUP_INTERVAL_S) * 2000);
    const others = notifications.flatMap(ofBlue).filter((a) => a.labels.alertname !== "ServerDown");
    expect(others).toEqual([]);
    // The instance left running was never the subject of a notification.
    expect(notifications.flatMap((n) => n.alerts).filter((a) => a.labels.instance === "websocket-green")).toEqual([]);
  }, 60_000);

  test("the restarted instance resolves ServerDown, and the resolved notification arrives", async () => {
    blue = await startBinary(blueEnv);
    await until("the resolved ServerDown notification", () =>
      notifications.some(
        (n) =>
          n.receiver === "page" &&
          n.status === "resolved" &&
          n.alerts.some((a) => a.labels.alertname === "ServerDown" && a.labels.instance === "websocket-blue"),
      ),
    );
    const resolved = notifications.find(
      (n) => n.status === "resolved" && n.alerts.some((a) => a.labels.alertname === "ServerDown"),
    )!;
    expect(resolved.alerts.map((a) => [a.labels.alertname, a.status])).toEqual([["ServerDown", "resolved"]]);
    // Still nothing else of that instance, firing or resolved.
    expect(notifications.flatMap(ofBlue).filter((a) => a.labels.alertname !== "ServerDown")).toEqual([]);
  }, 60_000);

  test("Redis stopped: RedisDown pages through the exporter, the instances' BackplaneDown is held back", async () => {
    redis!.kill("SIGKILL");
    await redis!.exited;
    await until("the RedisDown page", () =>
      notifications.some((n) => n.status === "firing" && n.alerts.some((a) => a.labels.alertname === "RedisDown")),
    );
    const page = notifications.find((n) => n.alerts.some((a) => a.labels.alertname === "RedisDown"))!;
    expect(page.receiver).toBe("page");
    expect(page.alerts[0]!.labels).toMatchObject({ alertname: "RedisDown", job: "redis", instance: "redis" });
    expect(page.alerts[0]!.annotations.runbook_url).toBe(`${runbookBase}#redisdown`);

    await until("both instances' BackplaneDown to be inhibited by RedisDown", async () => {
      const held = (await amAlerts()).filter(
        (a) => a.labels.alertname === "BackplaneDown" && a.status.state === "suppressed",
      );
      return held.length === 2;
    });
    // As above: a bounded wait to prove that nothing else was sent.
    await Bun.sleep((GROUP_WAIT_S + GROUP_INTERVAL_S) * 2000);
    expect(notifications.flatMap((n) => n.alerts).filter((a) => a.labels.alertname === "BackplaneDown")).toEqual([]);
  }, 60_000);
});
