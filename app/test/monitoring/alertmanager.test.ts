// The Alertmanager configuration, checked by amtool itself: it loads, every alert of the rule files
// reaches the receiver of its severity, the inhibition rules name alerts that exist, the commented
// receiver examples load once uncommented, and entrypoint.sh puts the webhook URLs in. The compose
// images are the releases of the Debian packages these tests run.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { ALERTMANAGER_CONFIG, ALERTMANAGER_ENTRYPOINT, COMPOSE_FILE, RULES_DIR, run, tool, ymlFiles } from "./paths";

const amtool = tool("amtool");
const temps: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "alertmanager-"));
  temps.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

interface AlertRule {
  alert?: string;
  labels?: Record<string, string>;
}
const alerts = ymlFiles(RULES_DIR).flatMap((file) =>
  (parse(readFileSync(file, "utf8")).groups as { rules: AlertRule[] }[]).flatMap((g) => g.rules.filter((r) => r.alert)),
);
const config = parse(readFileSync(ALERTMANAGER_CONFIG, "utf8"));

/** What amtool printed, without its note that --config.file overrides --alertmanager.url. */
const printed = (output: string) =>
  output
    .split("\n")
    .filter((l) => l.trim() && !l.startsWith("Warning: --config.file"))
    .join("\n");

/** The receivers amtool resolves for a label set, as it prints them ("page,team"). */
function receiversFor(labels: Record<string, string>): string {
  const args = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
  const { code, output } = run([amtool, "config", "routes", "test", `--config.file=${ALERTMANAGER_CONFIG}`, ...args]);
  expect({ labels, code }).toEqual({ labels, code: 0 });
  return printed(output);
}

describe("amtool", () => {
  test("check-config accepts alertmanager.yml", () => {
    const { code, output } = run([amtool, "check-config", ALERTMANAGER_CONFIG]);
    expect(output).toContain("SUCCESS");
    expect(output).toContain(`${config.inhibit_rules.length} inhibit rules`);
    expect(code).toBe(0);
  });

  test("check-config rejects a config whose route names a receiver that does not exist", () => {
    const dir = tempDir();
    const broken = join(dir, "alertmanager.yml");
    writeFileSync(broken, readFileSync(ALERTMANAGER_CONFIG, "utf8").replace("receiver: page", "receiver: nobody"));
    const { code, output } = run([amtool, "check-config", broken]);
    expect(code).not.toBe(0);
    expect(output).toContain("nobody");
  });

  test("critical alerts page, warnings go to the team, and so does an alert without severity", () => {
    expect(receiversFor({ alertname: "Anything", severity: "critical" })).toBe("page");
    expect(receiversFor({ alertname: "Anything", severity: "warning" })).toBe("team");
    expect(receiversFor({ alertname: "Anything" })).toBe("team");
  });

  // --verify.receivers makes amtool itself fail when the labels reach another receiver.
  for (const alert of alerts) {
    test(`${alert.alert} (${alert.labels?.severity}) reaches the receiver of its severity`, () => {
      const expected = alert.labels?.severity === "critical" ? "page" : "team";
      const labels = { alertname: alert.alert!, ...alert.labels, job: "websocket", instance: "websocket-blue" };
      const args = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
      const ok = run([
        amtool,
        "config",
        "routes",
        "test",
        `--config.file=${ALERTMANAGER_CONFIG}`,
        `--verify.receivers=${expected}`,
        ...args,
      ]);
      expect({ alert: alert.alert, code: ok.code, output: printed(ok.output) }).toEqual({
        alert: alert.alert,
        code: 0,
        output: expected,
      });
      const other = expected === "page" ? "team" : "page";
      const wrong = run([
        amtool,
        "config",
        "routes",
        "test",
        `--config.file=${ALERTMANAGER_CONFIG}`,
        `--verify.receivers=${other}`,
        ...args,
      ]);
      expect(wrong.code).not.toBe(0);
    });
  }
});

describe("alertmanager.yml", () => {
  test("groups by alert and instance, with timings that page promptly and repeat pages hourly", () => {
    expect(config.route.group_by).toEqual(["alertname", "instance"]);
    expect(config.route.group_wait).toBe("30s");
    expect(config.route.group_interval).toBe("5m");
    const page = config.route.routes.find((r: { receiver: string }) => r.receiver === "page");
    expect(page.repeat_interval).toBe("1h");
  });

  test("every alert name an inhibition rule matches exists in the rule files", () => {
    const names = new Set(alerts.map((a) => a.alert!));
    for (const rule of config.inhibit_rules) {
      for (const matcher of [...rule.source_matchers, ...rule.target_matchers] as string[]) {
        const m = /^alertname(=~|!=|=)"(.*)"$/.exec(matcher);
        if (!m) continue;
        const pattern = new RegExp(`^(?:${m[2]})$`);
        const matched = [...names].filter((n) => pattern.test(n));
        expect({ matcher, matched: matched.length > 0 }).toEqual({ matcher, matched: true });
      }
    }
  });

  test("ServerDown inhibits the other alerts of its own job and instance only", () => {
    const rule = config.inhibit_rules.find((r: { source_matchers: string[] }) =>
      r.source_matchers.includes('alertname="ServerDown"'),
    );
    expect(rule).toMatchObject({ target_matchers: ['alertname!="ServerDown"'], equal: ["job", "instance"] });
  });

  test("the commented Slack, email, PagerDuty and token examples load once uncommented", () => {
    const source = readFileSync(ALERTMANAGER_CONFIG, "utf8");
    const keys = ["smtp_", "pagerduty_configs", "slack_configs", "email_configs", "http_config"];
    const lines = source.split("\n");
    const out: string[] = [];
    // Uncomments each commented block that starts with one of the keys, down to its last indented line.
    let indent = -1;
    for (const line of lines) {
      const m = /^(\s*)# (.*)$/.exec(line);
      if (
        m &&
        (keys.some((k) => m[2]!.startsWith(k)) || (indent >= 0 && m[1]!.length === indent && m[2]!.startsWith(" ")))
      ) {
        if (keys.some((k) => m[2]!.startsWith(k))) indent = m[1]!.length;
        out.push(`${m[1]}${m[2]}`);
        continue;
      }
      indent = -1;
      out.push(line);
    }
    const enabled = out.join("\n");
    for (const key of [
      "slack_configs:",
      "email_configs:",
      "pagerduty_configs:",
      "smtp_smarthost:",
      "credentials_file:",
    ])
      expect(enabled).toMatch(new RegExp(`^\\s*${key}`, "m"));
    const dir = tempDir();
    const file = join(dir, "alertmanager.yml");
    writeFileSync(file, enabled);
    const parsed = parse(enabled);
    const team = parsed.receivers.find((r: { name: string }) => r.name === "team");
    const page = parsed.receivers.find((r: { name: string }) => r.name === "page");
    expect(team.slack_configs[0].api_url_file).toStartWith("/run/secrets/alertmanager/");
    expect(team.email_configs[0].to).toBeTruthy();
    expect(page.pagerduty_configs[0].routing_key_file).toStartWith("/run/secrets/alertmanager/");
    const { code, output } = run([amtool, "check-config", file]);
    expect(output).toContain("SUCCESS");
    expect(code).toBe(0);
  });
});

describe("entrypoint.sh", () => {
  const render = (env: Record<string, string>) => {
    const dir = tempDir();
    const rendered = join(dir, "rendered.yml");
    const args = join(dir, "args");
    // A double of /bin/alertmanager that records its arguments, so the script's exec is visible.
    const fake = join(dir, "alertmanager");
    writeFileSync(fake, `#!/bin/sh\nprintf '%s\\n' "$@" > "${args}"\n`, { mode: 0o755 });
    const proc = Bun.spawnSync(["sh", ALERTMANAGER_ENTRYPOINT, "--storage.path=/x"], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        ALERTMANAGER_TEMPLATE: ALERTMANAGER_CONFIG,
        ALERTMANAGER_CONFIG: rendered,
        ALERTMANAGER_BIN: fake,
        ...env,
      },
      stdout: "pipe",
      stderr: "pipe",
    });
    return {
      code: proc.exitCode,
      stderr: proc.stderr.toString(),
      config: () => parse(readFileSync(rendered, "utf8")),
      args: () => readFileSync(args, "utf8").trim().split("\n"),
      rendered,
    };
  };
  const urls = (config: any) =>
    Object.fromEntries(config.receivers.map((r: any) => [r.name, r.webhook_configs[0].url as string]));

  test("writes both webhook URLs into a copy, byte for byte, and starts Alertmanager on it", () => {
    const page = "https://hooks.example.com/page?token=a&b=c";
    const r = render({ ALERT_PAGE_WEBHOOK_URL: page, ALERT_TEAM_WEBHOOK_URL: "http://chatops:8080/team" });
    expect(r.code).toBe(0);
    expect(urls(r.config())).toEqual({ page, team: "http://chatops:8080/team" });
    expect(r.args()).toEqual([`--config.file=${r.rendered}`, "--storage.path=/x"]);
    // The rest of the file is unchanged.
    const { receivers: _a, ...rest } = r.config();
    const { receivers: _b, ...original } = config;
    expect(rest).toEqual(original);
    expect(run([amtool, "check-config", r.rendered]).code).toBe(0);
  });

  test("the team URL defaults to the page URL", () => {
    const r = render({ ALERT_PAGE_WEBHOOK_URL: "https://hooks.example.com/all" });
    expect(urls(r.config())).toEqual({ page: "https://hooks.example.com/all", team: "https://hooks.example.com/all" });
  });

  test("without URLs the placeholders stay and it says so", () => {
    const r = render({});
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("ALERT_PAGE_WEBHOOK_URL is not set");
    expect(urls(r.config())).toEqual(urls(config));
  });

  test("refuses a URL that is not http(s) or would break the YAML", () => {
    for (const bad of ["ftp://x/y", "https://x/y z", 'https://x/"y']) {
      const r = render({ ALERT_PAGE_WEBHOOK_URL: bad });
      expect({ bad, code: r.code }).toEqual({ bad, code: 2 });
    }
  });
});

describe("docker-compose.yml runs the releases these tests run", () => {
  const compose = parse(readFileSync(COMPOSE_FILE, "utf8"), { merge: true });
  const version = (cmd: string[]) => /(\d+\.\d+\.\d+)/.exec(run(cmd).output)?.[1];

  test("Alertmanager: the image's release is Debian's prometheus-alertmanager", () => {
    const debian = version([tool("prometheus-alertmanager"), "--version"]);
    expect(compose.services.alertmanager.image).toBe(`prom/alertmanager:v${debian}`);
  });

  test("redis_exporter: the image's release is Debian's prometheus-redis-exporter", () => {
    const debian = version([tool("prometheus-redis-exporter"), "--version"]);
    expect(compose.services["redis-exporter"].image).toBe(`oliver006/redis_exporter:v${debian}`);
  });
});
