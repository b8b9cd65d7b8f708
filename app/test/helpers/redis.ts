// Starts a real redis-server (Debian's package) on a free loopback port, in a private temp dir. By
// default with an append-only file synced on every write, so a SIGKILL loses nothing that was
// acknowledged; `persistence: "none"` keeps only what `save()` wrote, which is how a restart from a
// stale snapshot (or a Redis without persistence) is made.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import Redis from "ioredis";
import { freePort } from "./binary";

export interface TestRedis {
  url: string;
  port: number;
  /** A fresh key prefix for one test, so tests sharing the server never see each other's keys. */
  prefix(): string;
  /** SIGKILL: the server dies without saving beyond its append-only file. */
  kill(): Promise<void>;
  /** Starts the server again on the same port and data dir. */
  restart(): Promise<void>;
  /** SAVE: a snapshot that a restart with `persistence: "none"` comes back with. */
  save(): Promise<void>;
  /** SIGSTOP: the process hangs with its connections open, as a stuck or swapping Redis does. */
  pause(): void;
  /** SIGCONT after `pause`. */
  resume(): void;
  client(): Redis;
  stop(): Promise<void>;
}

let prefixes = 0;

export async function startRedis(options: { persistence?: "aof" | "none" } = {}): Promise<TestRedis> {
  const persistence =
    options.persistence === "none"
      ? ["--appendonly", "no", "--save", ""]
      : ["--appendonly", "yes", "--appendfsync", "always", "--save", ""];
  const dir = mkdtempSync(join(tmpdir(), "chat-test-redis-"));
  const port = freePort();
  let proc: Subprocess | undefined;
  const clients: Redis[] = [];

  const launch = async () => {
    proc = Bun.spawn(
      [
        "redis-server",
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        dir,
        ...persistence,
        "--protected-mode",
        "no",
      ],
      { stdout: "ignore", stderr: "ignore" },
    );
    const probe = new Redis(port, "127.0.0.1", {
      lazyConnect: true,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
    });
    probe.on("error", () => {});
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await probe.connect();
        await probe.ping();
        probe.disconnect();
        return;
      } catch {
        probe.disconnect();
        if (Date.now() > deadline) throw new Error("redis-server did not start");
        await Bun.sleep(25);
      }
    }
  };
  await launch();

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    prefix: () => `t${process.pid}-${++prefixes}:`,
    kill: async () => {
      proc?.kill("SIGKILL");
      await proc?.exited;
    },
    restart: launch,
    save: async () => {
      const c = new Redis(port, "127.0.0.1");
      await c.save();
      c.disconnect();
    },
    pause: () => proc?.kill("SIGSTOP"),
    resume: () => proc?.kill("SIGCONT"),
    client: () => {
      const c = new Redis(port, "127.0.0.1");
      clients.push(c);
      return c;
    },
    stop: async () => {
      for (const c of clients) c.disconnect();
      proc?.kill("SIGCONT");
      proc?.kill("SIGTERM");
      await proc?.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
