// A throwaway redis-server for a benchmark run: loopback only, a free port, a temporary working
// directory, no persistence. Stopped and its directory removed by stopRedis (and killed with every
// other benchmark process if the run ends early).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BenchError, type Child, freePort, indent, spawnChild, stopChild } from "./processes";

export interface RedisServer {
  child: Child;
  port: number;
  url: string;
  version: string;
  dir: string;
}

export async function startRedis(timeoutMs = 10_000): Promise<RedisServer> {
  const binary = Bun.which("redis-server");
  if (!binary)
    throw new BenchError(
      "redis-server is not on PATH: the scale-out benchmark needs it (Debian: apt-get install redis-server)",
    );
  const version = /v=(\S+)/.exec(Bun.spawnSync([binary, "--version"]).stdout.toString())?.[1] ?? "unknown";
  const dir = mkdtempSync(join(tmpdir(), "bench-redis-"));
  // Removed however the run ends (stopRedis, failure, Ctrl-C: the exit handler runs on each).
  const removeDir = () => rmSync(dir, { recursive: true, force: true });
  process.on("exit", removeDir);
  const port = freePort();
  const child = spawnChild(
    "redis-server",
    [
      binary,
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir,
      "--save",
      "",
      "--appendonly",
      "no",
      "--loglevel",
      "notice",
    ],
    {
      cwd: dir,
    },
  );
  try {
    for (;;) {
      const line = await child.nextLine(timeoutMs, "starting");
      if (line.includes("Ready to accept connections")) break;
    }
  } catch (error) {
    removeDir();
    throw error instanceof BenchError ? error : new BenchError(`redis-server did not start:\n${indent(child.tail())}`);
  }
  return { child, port, url: `redis://127.0.0.1:${port}`, version, dir };
}

export async function stopRedis(redis: RedisServer) {
  await stopChild(redis.child);
  rmSync(redis.dir, { recursive: true, force: true });
}
