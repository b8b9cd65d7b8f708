// The compiled binary when it cannot open its listener: one line saying where and why, exit code 3,
// and none of the framework's source on the terminal.
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BINARY, freePort } from "../helpers/binary";

async function run(env: Record<string, string>) {
  // The database opens before the listener: in a directory of its own, not under the test's cwd.
  const dataDir = mkdtempSync(join(tmpdir(), "chat-listen-"));
  const proc = Bun.spawn([BINARY], {
    env: { PATH: process.env.PATH ?? "", DATA_DIR: dataDir, ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, stdout, stderr] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  rmSync(dataDir, { recursive: true, force: true });
  return { code, stdout, stderr };
}

test("a port in use", async () => {
  const holder = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("taken") });
  try {
    const result = await run({ HOST: "127.0.0.1", PORT: String(holder.port) });
    expect(result).toEqual({
      code: 3,
      stdout: "",
      stderr: `error: cannot listen on 127.0.0.1:${holder.port}: address already in use\n`,
    });
  } finally {
    holder.stop(true);
  }
});

test("an address this machine does not have", async () => {
  // 192.0.2.0/24 is reserved for documentation (RFC 5737): no host carries it.
  const port = freePort();
  expect(await run({ HOST: "192.0.2.1", PORT: String(port) })).toEqual({
    code: 3,
    stdout: "",
    stderr: `error: cannot listen on 192.0.2.1:${port}: address not available on this machine\n`,
  });
});

test("a host name that does not resolve", async () => {
  // .invalid never resolves (RFC 2606).
  const port = freePort();
  expect(await run({ HOST: "chat.invalid", PORT: String(port) })).toEqual({
    code: 3,
    stdout: "",
    stderr: `error: cannot listen on chat.invalid:${port}: host name does not resolve\n`,
  });
});
