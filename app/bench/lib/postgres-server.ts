// A throwaway PostgreSQL for a benchmark run: loopback only, a free port, a temporary data directory
// removed at the end. PostgreSQL refuses to run as root: initdb and the server then run as the
// `postgres` user (Debian's package creates it). Stopped by stopPostgres, and with the run however
// it ends (an exit handler stops it immediately).

import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SQL } from "bun";
import { BenchError, freePort } from "./processes";

export interface PostgresServer {
  url: string;
  version: string;
  stop(): Promise<void>;
}

function serverBin(): string {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  const bin = versions.map((v) => join(root, v, "bin")).find((b) => existsSync(join(b, "postgres")));
  if (!bin)
    throw new BenchError("PostgreSQL is not installed: the write-behind figures need it (apt-get install postgresql)");
  return bin;
}

export async function startPostgres(timeoutMs = 20_000): Promise<PostgresServer> {
  const bin = serverBin();
  const root = process.getuid?.() === 0;
  const as = (argv: string[]) => (root ? ["runuser", "-u", "postgres", "--", ...argv] : argv);
  const dir = mkdtempSync(join(tmpdir(), "bench-pg-"));
  if (root) chownSync(dir, Number(Bun.spawnSync(["id", "-u", "postgres"]).stdout.toString().trim()), -1);
  const data = join(dir, "data");
  const stopNow = () => {
    Bun.spawnSync(as([join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"]), {
      stdout: "ignore",
      stderr: "ignore",
    });
    rmSync(dir, { recursive: true, force: true });
  };
  process.on("exit", stopNow);
  const init = Bun.spawnSync(as([join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "chat", "-E", "UTF8"]), {
    stdout: "ignore",
    stderr: "pipe",
  });
  if (init.exitCode !== 0) throw new BenchError(`initdb failed: ${init.stderr.toString()}`);
  const port = freePort();
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`;
  const start = Bun.spawnSync(
    as([
      join(bin, "pg_ctl"),
      "-D",
      data,
      "-o",
      options,
      "-l",
      join(dir, "log"),
      "-w",
      "-t",
      String(timeoutMs / 1000),
      "start",
    ]),
    { stdout: "ignore", stderr: "pipe" },
  );
  if (start.exitCode !== 0) throw new BenchError(`postgres did not start: ${start.stderr.toString()}`);
  const url = `postgres://chat@127.0.0.1:${port}/postgres`;
  const sql = new SQL({ url, max: 1 });
  const [row] = await sql`SHOW server_version`;
  await sql.close();
  return {
    url,
    version: String((row as { server_version: string }).server_version),
    async stop() {
      process.off("exit", stopNow);
      stopNow();
    },
  };
}
