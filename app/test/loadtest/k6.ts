// Runs the real k6 on a script of app/loadtest/, the binary found (or built) by scripts/lib.sh's k6_bin.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..", "..", "..");
export const LOADTEST_DIR = join(ROOT, "app", "loadtest");

let k6Path: string | undefined;

/** Path of the pinned k6, installed with `go install` by scripts/lib.sh when the machine lacks it. */
export function k6(): string {
  if (k6Path) return k6Path;
  const result = Bun.spawnSync(["bash", "-c", '. scripts/lib.sh && k6_bin "$PWD"'], { cwd: ROOT, stderr: "inherit" });
  if (result.exitCode !== 0) throw new Error("scripts/lib.sh k6_bin failed");
  k6Path = result.stdout.toString().trim();
  return k6Path;
}

/** One metric of k6's --summary-export: trends have percentiles, rates passes/fails, counters count. */
export interface SummaryMetric {
  count?: number;
  rate?: number;
  value?: number;
  passes?: number;
  fails?: number;
  avg?: number;
  "p(95)"?: number;
  thresholds?: Record<string, boolean>;
}

export interface K6Run {
  exitCode: number;
  output: string;
  metrics: Record<string, SummaryMetric>;
}

/** Runs `k6 run <script>` with the given environment and returns its exit code and summary. */
export async function runK6(script: string, env: Record<string, string>, timeoutMs = 60_000): Promise<K6Run> {
  const dir = mkdtempSync(join(tmpdir(), "chat-k6-"));
  const summary = join(dir, "summary.json");
  try {
    const proc = Bun.spawn(
      [k6(), "run", "--quiet", "--no-color", "--summary-export", summary, join(LOADTEST_DIR, script)],
      {
        env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? dir, K6_NO_USAGE_REPORT: "true", ...env },
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
    const [stdout, stderr, exitCode] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    clearTimeout(timer);
    let metrics: Record<string, SummaryMetric> = {};
    try {
      metrics = JSON.parse(readFileSync(summary, "utf8")).metrics;
    } catch {}
    return { exitCode, output: stdout + stderr, metrics };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
