// Where the monitoring configuration lives in the repository, and the tools the tests need.
import { join } from "node:path";
import { parse, stringify } from "yaml";

export const REPO = join(import.meta.dir, "..", "..", "..");
export const PROMETHEUS_DIR = join(REPO, "monitoring", "prometheus");
export const PROMETHEUS_CONFIG = join(PROMETHEUS_DIR, "prometheus.yml");
export const RULES_DIR = join(PROMETHEUS_DIR, "rules");
export const RULE_TESTS_DIR = join(PROMETHEUS_DIR, "tests");
export const GRAFANA_DIR = join(REPO, "monitoring", "grafana");
export const DASHBOARDS_DIR = join(GRAFANA_DIR, "dashboards");
export const RUNBOOK = join(REPO, "docs", "runbook.md");
export const ALERTMANAGER_DIR = join(REPO, "monitoring", "alertmanager");
export const ALERTMANAGER_CONFIG = join(ALERTMANAGER_DIR, "alertmanager.yml");
export const ALERTMANAGER_ENTRYPOINT = join(ALERTMANAGER_DIR, "entrypoint.sh");
export const COMPOSE_FILE = join(REPO, "docker-compose.yml");

/** The Debian package that installs each tool the monitoring tests run. */
const PACKAGES = {
  promtool: "prometheus",
  prometheus: "prometheus",
  amtool: "prometheus-alertmanager",
  "prometheus-alertmanager": "prometheus-alertmanager",
  "prometheus-redis-exporter": "prometheus-redis-exporter",
} as const;

/** The path of a Debian package binary, or an error saying how to get it. */
export function tool(name: keyof typeof PACKAGES): string {
  const path = Bun.which(name);
  if (!path)
    throw new Error(`${name} is not installed: scripts/test.sh installs it (apt-get install ${PACKAGES[name]})`);
  return path;
}

export function ymlFiles(dir: string): string[] {
  return [...new Bun.Glob("*.yml").scanSync({ cwd: dir })].sort().map((f) => join(dir, f));
}

/** Runs a command to completion and returns its exit code and combined output. */
export function run(cmd: string[], cwd = REPO): { code: number; output: string } {
  const proc = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  return { code: proc.exitCode ?? -1, output: proc.stdout.toString() + proc.stderr.toString() };
}

interface TargetGroup {
  targets: string[];
  labels: Record<string, string>;
}

/**
 * The websocket targets file (file_sd) as the deploy script writes it on first use (render_targets in
 * scripts/deploy/common.sh; the file itself is untracked deploy state), with each color's address
 * pointed at its test instance; `colors` keeps only those colors.
 */
export function testTargets(ports: Record<string, number>, colors?: string[]): string {
  const render = Bun.spawnSync(
    [
      "bash",
      "-c",
      `. ${JSON.stringify(join(REPO, "scripts", "deploy", "common.sh"))}; rt_url() { printf 'http://websocket-%s:3001\\n' "$1"; }; render_targets blue green`,
    ],
    { stdout: "pipe", stderr: "inherit" },
  );
  const real = parse(render.stdout.toString()) as TargetGroup[];
  return stringify(
    real
      .filter((g) => !colors || colors.includes(g.labels.color!))
      .map((g) => ({ targets: [`127.0.0.1:${ports[g.labels.color!]}`], labels: g.labels })),
  );
}
