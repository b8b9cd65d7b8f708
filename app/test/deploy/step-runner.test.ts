// The step runners of scripts/lib.sh, run by real bash. `check` (the test command's runner): a
// failing command inside a step fails that step, the independent steps after it still run, a step
// that needs a failed one is skipped, and the run ends with status 1 and the list of failures.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { REPO } from "./harness";

async function bash(script: string) {
  const proc = Bun.spawn(["bash", "-c", script], { cwd: REPO, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { stdout, stderr, code };
}

const prelude = `set -Eeuo pipefail\n. ${JSON.stringify(join(REPO, "scripts", "lib.sh"))}\n`;

test("check: a failing command stops its step; later independent steps run; the run exits 1 at the end", async () => {
  const run = await bash(`${prelude}
half() { echo "half: before"; false; echo "half: after the failure"; }
fine() { echo "fine: $1"; }
main() {
  check "first" half
  check "second" fine two
  check "third" --after "first" fine three
  check "fourth" --after "second" fine four
  check_summary
}
main
echo "not reached"`);
  expect(run.code).toBe(1);
  expect(run.stdout).toContain("half: before");
  expect(run.stdout).not.toContain("half: after the failure");
  expect(run.stdout).toMatch(/^<== first \(\d+s\), failed with 1$/m);
  expect(run.stdout).toContain("fine: two");
  expect(run.stdout).toContain("<== third skipped: first failed");
  expect(run.stdout).not.toContain("fine: three");
  expect(run.stdout).toContain("fine: four");
  expect(run.stdout).not.toContain("not reached");
  expect(run.stderr).toBe("failed steps (2):\n  first\n  third\n");
});

test("check: every step passing exits 0", async () => {
  const run = await bash(`${prelude}
check "one" true
check "two" bash -c "exit 0"
check_summary`);
  expect(run.code).toBe(0);
  expect(run.stdout).toEndWith("all steps passed\n");
});
