// A throwaway PostgreSQL for a benchmark run: loopback only, a free port, a temporary data directory
// removed at the end. PostgreSQL refuses to run as root: initdb and the server then run as the
// `postgres` user (Debian's package creates it). Stopped by stopPostgres, and with the run however
// it ends (an exit handler stops it immediately).

import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SQL } from "bun";
import { BenchError, freePort } from "./processes";

export interface PostgresServer {
  url: string;
  version: string;
  /** CPU seconds used so far by the server: the postmaster and every process it started. */
  cpuSeconds(): number;
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
    cpuSeconds: () => serverCpuSeconds(data),
    async stop() {
      process.off("exit", stopNow);
      stopNow();
    },
  };
}

/**
 * CPU seconds of the server whose data directory is `data`: its postmaster (first line of
 * postmaster.pid) and its children (backends, WAL writer, checkpointer), read from /proc. A backend
 * that exited before the call is not counted: the chat's pool keeps its connections open.
 */
function serverCpuSeconds(data: string): number {
  const postmaster = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]);
  let total = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // exited meanwhile
    }
    // Fields after the command name (which may hold spaces): state, ppid, ..., utime (12th), stime (13th).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(entry) !== postmaster && Number(fields[1]) !== postmaster) continue;
    total += (Number(fields[11]) + Number(fields[12])) / 100;
  }
  return total;
}
