// Each inhibition rule of alertmanager.yml, against a real Alertmanager (Debian's, started through
// the repository's entrypoint.sh on the repository's config): alerts are posted to its API the way
// Prometheus posts them, and its own view of each alert (suppressed by what, or active) is checked.
// What is held back must be held back, and the alerts of other instances must not be.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { freePort } from "../helpers/binary";
import { ALERTMANAGER_CONFIG, ALERTMANAGER_ENTRYPOINT, tool } from "./paths";

type Labels = Record<string, string>;

let dir = "";
let alertmanager: Subprocess<"ignore", "pipe", "pipe"> | undefined;
let amUrl = "";
let output = "";

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  let delay = 25;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\nalertmanager output:\n${output}`);
    await Bun.sleep(delay);
    delay = Math.min(delay * 2, 200);
  }
}

/** Posts alerts as Prometheus does; `resolved` ends them. */
async function post(alerts: Labels[], resolved = false) {
  const now = Date.now();
  const body = alerts.map((labels) => ({
    labels,
    annotations: {},
    startsAt: new Date(now - 60_000).toISOString(),
    endsAt: new Date(resolved ? now - 1000 : now + 600_000).toISOString(),
  }));
  const res = await fetch(`${amUrl}/api/v2/alerts`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(200);
}

const key = (l: Labels) => `${l.alertname}/${l.instance ?? "-"}`;

/** Alertmanager's state of each active alert, by alert name and instance: "active" or "suppressed". */
async function states(): Promise<Record<string, string>> {
  const alerts = (await (await fetch(`${amUrl}/api/v2/alerts`)).json()) as {
    labels: Labels;
    status: { state: string; inhibitedBy: string[] };
  }[];
  return Object.fromEntries(alerts.map((a) => [key(a.labels), a.status.state]));
}

/**
 * Posts `sources` and `targets`, waits until Alertmanager has applied its inhibitions, then checks
 * every target's state and ends them all, so the next case starts from nothing.
 */
async function expectInhibition(sources: Labels[], targets: [Labels, "suppressed" | "active"][]) {
  await post(sources);
  await post(targets.map(([l]) => l));
  const expected = Object.fromEntries([
    ...sources.map((s) => [key(s), "active"]),
    ...targets.map(([l, state]) => [key(l), state]),
  ]);
  let seen: Record<string, string> = {};
  await until(`inhibitions ${JSON.stringify(expected)}`, async () => {
    seen = await states();
    return JSON.stringify(Object.entries(seen).sort()) === JSON.stringify(Object.entries(expected).sort());
  }).catch(() => undefined);
  expect(seen).toEqual(expected);
  await post([...sources, ...targets.map(([l]) => l)], true);
  await until("the case's alerts to end", async () => Object.keys(await states()).length === 0);
}

const blue = { job: "websocket", instance: "websocket-blue", color: "blue" };
const green = { job: "websocket", instance: "websocket-green", color: "green" };
const redis = { job: "redis", instance: "redis" };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "inhibition-live-"));
  const port = freePort();
  amUrl = `http://127.0.0.1:${port}`;
  alertmanager = Bun.spawn(
    [
      "sh",
      ALERTMANAGER_ENTRYPOINT,
      `--storage.path=${dir}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--cluster.listen-address=",
    ],
    {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        ALERTMANAGER_TEMPLATE: ALERTMANAGER_CONFIG,
        ALERTMANAGER_CONFIG: join(dir, "alertmanager.yml"),
        ALERTMANAGER_BIN: tool("prometheus-alertmanager"),
        // Notifications are not what this test looks at: a closed loopback port refuses them.
        ALERT_PAGE_WEBHOOK_URL: `http://127.0.0.1:${freePort()}/page`,
      },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  void (async () => {
    for await (const chunk of alertmanager!.stderr) output += new TextDecoder().decode(chunk);
  })();
  await until("alertmanager to be ready", async () => (await fetch(`${amUrl}/-/ready`)).ok);
}, 20_000);

afterAll(async () => {
  if (alertmanager && alertmanager.exitCode === null) {
    alertmanager.kill("SIGTERM");
    await alertmanager.exited;
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("inhibition rules", () => {
  test("ServerDown holds back the other alerts of its job and instance, and nothing else", async () => {
    await expectInhibition(
      [{ alertname: "ServerDown", severity: "critical", ...blue }],
      [
        [{ alertname: "HighMemoryUsage", severity: "warning", ...blue }, "suppressed"],
        [{ alertname: "BackplaneDown", severity: "critical", ...blue }, "suppressed"],
        [{ alertname: "HighMemoryUsage", severity: "warning", ...green }, "active"],
        [{ alertname: "FrontDoorErrors", severity: "critical", job: "traefik", instance: "traefik" }, "active"],
        [{ alertname: "DeployStuck", severity: "warning" }, "active"],
      ],
    );
  });

  test("RedisDown holds back the backplane alerts of every instance and the other Redis alerts", async () => {
    await expectInhibition(
      [{ alertname: "RedisDown", severity: "critical", ...redis }],
      [
        [{ alertname: "BackplaneDown", severity: "critical", ...blue }, "suppressed"],
        [{ alertname: "BackplaneFramesDropped", severity: "warning", ...green }, "suppressed"],
        [{ alertname: "RedisEvictingKeys", severity: "warning", ...redis }, "suppressed"],
        [{ alertname: "HighCPUUsage", severity: "warning", ...blue }, "active"],
      ],
    );
  });

  test("ConnectionLimitReached holds back HighConnectionCount of the same instance only", async () => {
    await expectInhibition(
      [{ alertname: "ConnectionLimitReached", severity: "critical", ...blue }],
      [
        [{ alertname: "HighConnectionCount", severity: "warning", ...blue }, "suppressed"],
        [{ alertname: "HighConnectionCount", severity: "warning", ...green }, "active"],
      ],
    );
  });

  test("BackplaneDown holds back BackplaneFramesDropped of the same instance only", async () => {
    await expectInhibition(
      [{ alertname: "BackplaneDown", severity: "critical", ...blue }],
      [
        [{ alertname: "BackplaneFramesDropped", severity: "warning", ...blue }, "suppressed"],
        [{ alertname: "BackplaneFramesDropped", severity: "warning", ...green }, "active"],
      ],
    );
  });
});
