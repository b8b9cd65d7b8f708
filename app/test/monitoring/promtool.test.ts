// The Prometheus configuration, alert rules and rule unit tests, checked by promtool itself; plus
// the conventions promtool cannot see: every alert has a severity, a runbook section, and a unit
// test that holds it silent before its `for` window and firing after it.
import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { parse } from "yaml";
import { PROMETHEUS_CONFIG, PROMETHEUS_DIR, RULE_TESTS_DIR, RULES_DIR, RUNBOOK, run, tool, ymlFiles } from "./paths";

const promtool = tool("promtool");
const temps: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "promtool-"));
  temps.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleTest {
  name: string;
  alert_rule_test?: { eval_time: string; alertname: string; exp_alerts?: unknown[] }[];
}

const ruleFiles = ymlFiles(RULES_DIR);
const alertsByFile = new Map<string, AlertRule[]>(
  ruleFiles.map((file) => [
    basename(file),
    (parse(readFileSync(file, "utf8")).groups as { rules: AlertRule[] }[]).flatMap((g) =>
      g.rules.filter((r) => r.alert),
    ),
  ]),
);
const allAlerts = [...alertsByFile.values()].flat();

/** Prometheus durations as used in rule tests (1d, 1444m, 90s) in seconds. */
function seconds(duration: string): number {
  const units: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };
  let total = 0;
  for (const [, n, unit] of duration.matchAll(/(\d+)(ms|s|m|h|d|w|y)/g)) total += Number(n) * units[unit!]!;
  return total;
}

describe("promtool", () => {
  test("check config accepts prometheus.yml and the rule files it loads", () => {
    const { code, output } = run([promtool, "check", "config", PROMETHEUS_CONFIG]);
    expect(output).toContain("SUCCESS");
    expect(code).toBe(0);
    expect(output).toContain(`${RULES_DIR}/`);
  });

  test("check rules accepts every rule file", () => {
    const { code, output } = run([promtool, "check", "rules", ...ruleFiles]);
    expect(code).toBe(0);
    expect(output.match(/SUCCESS/g)?.length).toBe(ruleFiles.length);
  });

  // A day of series at one-minute steps (ReconnectStorm, RateLimitSurge) takes promtool seconds.
  test("test rules passes every rule unit test", () => {
    const { code, output } = run([promtool, "test", "rules", ...ymlFiles(RULE_TESTS_DIR)]);
    expect(output).not.toContain("FAILED");
    expect(code).toBe(0);
  }, 60_000);

  test("check rules rejects a rule file with a broken expression", () => {
    const dir = tempDir();
    const broken = join(dir, "connections.yml");
    const source = readFileSync(join(RULES_DIR, "connections.yml"), "utf8");
    writeFileSync(
      broken,
      source.replace(
        'websocket_connections_total{job="websocket"} > 8000',
        "sum by (instance (websocket_connections_total) > 8000",
      ),
    );
    const { code, output } = run([promtool, "check", "rules", broken]);
    expect(code).not.toBe(0);
    expect(output).toContain("FAILED");
  });

  test("test rules fails when an alert's annotations drift from what its test expects", () => {
    const dir = tempDir();
    cpSync(RULES_DIR, join(dir, "rules"), { recursive: true });
    cpSync(RULE_TESTS_DIR, join(dir, "tests"), { recursive: true });
    const file = join(dir, "rules", "deploy.yml");
    writeFileSync(file, readFileSync(file, "utf8").replace('#deploystuck"', '#elsewhere"'));
    const { code, output } = run([promtool, "test", "rules", join(dir, "tests", "deploy.yml")], dir);
    expect(code).not.toBe(0);
    expect(output).toContain("DeployStuck");
  });

  test("the commented metrics-token block is valid once its credentials file exists", () => {
    const dir = tempDir();
    const tokenFile = join(dir, "metrics_token");
    writeFileSync(tokenFile, "secret\n");
    const source = readFileSync(PROMETHEUS_CONFIG, "utf8");
    const enabled = source
      .replace(/^(\s*)# (authorization:)$/m, "$1$2")
      .replace(/^(\s*)# ( {2}type: Bearer)$/m, "$1$2")
      .replace(/^(\s*)# ( {2}credentials_file: ).*$/m, `$1$2${tokenFile}`);
    expect(enabled).not.toBe(source);
    const config = join(dir, "prometheus.yml");
    writeFileSync(config, enabled.replace("rules/*.yml", join(RULES_DIR, "*.yml")));
    const parsed = parse(enabled);
    const job = parsed.scrape_configs.find((j: { job_name: string }) => j.job_name === "websocket");
    expect(job.authorization).toEqual({ type: "Bearer", credentials_file: tokenFile });
    const { code, output } = run([promtool, "check", "config", config]);
    expect(output).toContain("SUCCESS");
    expect(code).toBe(0);
  });
});

describe("alert conventions", () => {
  const runbook = readFileSync(RUNBOOK, "utf8");
  // GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes.
  const anchors = new Set(
    [...runbook.matchAll(/^#{2,3} (.+)$/gm)].map((m) =>
      m[1]!
        .trim()
        .toLowerCase()
        .replace(/[^\w\- ]/g, "")
        .replace(/ /g, "-"),
    ),
  );

  test("the issue's alerts all exist, each once", () => {
    const names = allAlerts.map((a) => a.alert).sort();
    expect(names).toEqual(
      [
        "ActiveColorWithoutConnections",
        "BackplaneDown",
        "BackplaneFramesDropped",
        "ConnectionLimitReached",
        "DeployStuck",
        "EventLoopLag",
        "FileDescriptorsNearLimit",
        "FrontDoorErrors",
        "HighCPUUsage",
        "HighConnectionCount",
        "HighErrorRate",
        "HighMemoryUsage",
        "HighMessageLatency",
        "MessageStoreSlowCommits",
        "MessageStoreWriteBehindLag",
        "MessageStoreWriteErrors",
        "RateLimitSurge",
        "ReconnectStorm",
        "RedisDown",
        "RedisEvictingKeys",
        "RedisMemoryNearLimit",
        "RedisPersistenceFailing",
        "RedisRejectingConnections",
        "RedisReplicationBroken",
        "ResumeFailures",
        "ScrapeJobWithoutTargets",
        "ServerDown",
        "SlowConsumersClosed",
      ].sort(),
    );
  });

  for (const alert of allAlerts) {
    test(`${alert.alert} has a severity, a summary, a description and a runbook section`, () => {
      expect(["critical", "warning"]).toContain(alert.labels?.severity ?? "");
      expect(alert.annotations?.summary).toBeTruthy();
      expect(alert.annotations?.description).toBeTruthy();
      const anchor = alert.alert.toLowerCase();
      // The base is the external label set once in prometheus.yml (see the test below).
      expect(alert.annotations?.runbook_url).toBe(`{{ $externalLabels.runbook_base }}#${anchor}`);
      expect(anchors.has(anchor)).toBe(true);
    });
  }

  for (const [file, alerts] of alertsByFile) {
    test(`tests/${file} holds every alert of rules/${file} silent before its for window and firing after`, () => {
      const testFile = join(RULE_TESTS_DIR, file);
      const spec = parse(readFileSync(testFile, "utf8")) as { rule_files: string[]; tests: RuleTest[] };
      expect(spec.rule_files).toEqual([`../rules/${file}`]);
      const evals = spec.tests.flatMap((t) => t.alert_rule_test ?? []);
      for (const alert of alerts) {
        const mine = evals.filter((e) => e.alertname === alert.alert);
        const silent = mine.filter((e) => (e.exp_alerts ?? []).length === 0).map((e) => seconds(e.eval_time));
        const firing = mine.filter((e) => (e.exp_alerts ?? []).length > 0).map((e) => seconds(e.eval_time));
        expect({ alert: alert.alert, silent: silent.length > 0, firing: firing.length > 0 }).toEqual({
          alert: alert.alert,
          silent: true,
          firing: true,
        });
        // Some silent evaluation comes before some firing one: the `for` window was observed.
        expect(Math.min(...silent)).toBeLessThan(Math.max(...firing));
      }
    });
  }

  test("every rule file has a test file, and no test file is left without rules", () => {
    expect(ymlFiles(RULE_TESTS_DIR).map((f) => basename(f))).toEqual(ruleFiles.map((f) => basename(f)));
  });

  test("runbook links are absolute: prometheus.yml sets their base once, to an http(s) URL of the runbook", () => {
    const config = parse(readFileSync(PROMETHEUS_CONFIG, "utf8"));
    const base: string = config.global.external_labels.runbook_base;
    expect(base).toMatch(/^https?:\/\/[^/\s]+\/\S*runbook\.md$/);
    expect(new URL(`${base}#serverdown`).hash).toBe("#serverdown");
  });

  test("prometheus.yml loads the rules directory", () => {
    const config = parse(readFileSync(PROMETHEUS_CONFIG, "utf8"));
    expect(config.rule_files).toEqual(["rules/*.yml"]);
    expect(ymlFiles(join(PROMETHEUS_DIR, "rules"))).toEqual(ruleFiles);
  });
});
