// Starts a real PostgreSQL (Debian's package) on a free loopback port, in a private temp dir the
// `stop()` removes. PostgreSQL refuses to run as root, so initdb and the server run as the
// `postgres` user (created by the package) through runuser when the tests run as root.
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SQL, type Subprocess } from "bun";
import { freePort } from "./binary";

export interface TestPostgres {
  /** A database URL for a fresh database of one test (see `database()`), or the default one. */
  url: string;
  port: number;
  /** Creates an empty database and returns its URL, so tests sharing the server never see each other's rows. */
  database(): Promise<string>;
  /** SIGKILL of the postmaster: the server dies at once, its backends follow. */
  kill(): Promise<void>;
  /** Starts the server again on the same port and data dir (crash recovery included). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** The directory of the installed PostgreSQL server binaries (the newest major version). */
export function postgresBin(): string {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  for (const version of versions) {
    const bin = join(root, version, "bin");
    if (existsSync(join(bin, "postgres"))) return bin;
  }
  throw new Error("PostgreSQL server binaries not found (scripts/test.sh installs the postgresql package)");
}

const asRoot = process.getuid?.() === 0;

/** Runs a command as the `postgres` user when root, as is otherwise. */
function asPostgres(argv: string[]): string[] {
  return asRoot ? ["runuser", "-u", "postgres", "--", ...argv] : argv;
}

let databases = 0;

export async function startPostgres(): Promise<TestPostgres> {
  const bin = postgresBin();
  const dir = mkdtempSync(join(tmpdir(), "chat-test-pg-"));
  if (asRoot) chownSync(dir, Number(Bun.spawnSync(["id", "-u", "postgres"]).stdout.toString().trim()), -1);
  const data = join(dir, "data");
  const init = Bun.spawnSync(asPostgres([join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "chat", "-E", "UTF8"]), {
    stdout: "ignore",
    stderr: "pipe",
  });
  if (init.exitCode !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed: ${init.stderr.toString()}`);
  }
  const port = freePort();
  const url = `postgres://chat@127.0.0.1:${port}/postgres`;
  let proc: Subprocess | undefined;

  const postmasterPid = (): number | undefined => {
    try {
      return Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]);
    } catch {
      return undefined;
    }
  };

  const spawn = () =>
    Bun.spawn(
      asPostgres([
        join(bin, "postgres"),
        "-D",
        data,
        "-p",
        String(port),
        "-k",
        dir,
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "max_connections=100",
      ]),
      { stdout: "ignore", stderr: "ignore" },
    );

  const launch = async () => {
    proc = spawn();
    const deadline = Date.now() + 20_000;
    for (;;) {
      // Refused at start while the killed server's backends still hold its shared memory: again.
      if (proc.exitCode !== null) proc = spawn();
      const probe = new SQL({ url, max: 1, connectionTimeout: 2 });
      try {
        await probe`SELECT 1`;
        await probe.close();
        return;
      } catch {
        await probe.close().catch(() => {});
        if (Date.now() > deadline) throw new Error("postgres did not start");
        await Bun.sleep(50);
      }
    }
  };

  const kill = async () => {
    const pid = postmasterPid();
    if (pid) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
    }
    await proc?.exited;
    // The backends notice their postmaster's death and exit; a restart waits for them.
    const deadline = Date.now() + 10_000;
    while (pid && alive(pid) && Date.now() < deadline) await Bun.sleep(20);
  };

  try {
    await launch();
  } catch (error) {
    await kill();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }

  return {
    url,
    port,
    async database() {
      const name = `chat_${process.pid}_${++databases}`;
      const admin = new SQL({ url, max: 1 });
      await admin.unsafe(`CREATE DATABASE ${name}`);
      await admin.close();
      return `postgres://chat@127.0.0.1:${port}/${name}`;
    },
    kill,
    async restart() {
      await launch();
    },
    async stop() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function alive(pid: number) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
