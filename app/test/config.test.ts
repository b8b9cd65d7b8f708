// An invalid environment variable stops the server before anything starts: exit code 2 and one
// line naming the variable and what it accepts.
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { BINARY, freePort } from "./helpers/binary";

const APP = join(import.meta.dir, "..");

async function run(command: string[], env: Record<string, string>) {
  const proc = Bun.spawn(command, {
    cwd: APP,
    env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", PORT: String(freePort()), ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, stdout, stderr] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  return { code, stdout, stderr };
}

const cases: [string, string, string][] = [
  ["PORT", "abc", "an integer from 0 to 65535"],
  ["PORT", "70000", "an integer from 0 to 65535"],
  ["MAX_CONNECTIONS", "0", "an integer from 1 to 1000000"],
  ["HEARTBEAT_INTERVAL", "fast", "an integer from 100 to 600000"],
  ["COLOR", "purple", "one of blue, green, none"],
  ["LOG_LEVEL", "loud", "one of error, warn, info"],
  ["REDIS_URL", "http://localhost:6379", "a redis:// or rediss:// URL"],
  ["INSTANCE_ID", "has space", "1-64 characters"],
];

for (const [name, value, accepts] of cases) {
  test(`${name}=${value} from source: exit 2 and one line naming ${name}`, async () => {
    const { code, stdout, stderr } = await run([process.execPath, "run", "src/index.ts"], { [name]: value });
    expect(code).toBe(2);
    const lines = stderr.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`${name}=${JSON.stringify(value)}`);
    expect(lines[0]).toContain(accepts);
    // Nothing started: no log line, so no listener either.
    expect(stdout).toBe("");
  });
}

test("the compiled binary refuses an invalid variable the same way, with nothing listening", async () => {
  expect(existsSync(BINARY)).toBe(true);
  const port = freePort();
  const { code, stdout, stderr } = await run([BINARY], { PORT: String(port), DRAIN_TIMEOUT: "-1" });
  expect(code).toBe(2);
  expect(stderr).toBe('config error: invalid DRAIN_TIMEOUT="-1": expected an integer from 0 to 3600000\n');
  expect(stdout).toBe("");
  await expect(fetch(`http://127.0.0.1:${port}/health`)).rejects.toThrow();
});
