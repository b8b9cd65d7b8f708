// Runs the compiled binary (app/dist/realtime-server) as a child process for end-to-end tests.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { freePort } from "./ports";
import { UNLIMITED } from "./server";

export const BINARY = join(import.meta.dir, "..", "..", "dist", "realtime-server");

export interface RunningBinary {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  port: number;
  httpUrl: string;
  output(): string;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number>;
}

export { freePort } from "./ports";

/** Starts the binary with the given environment and waits until /health answers. */
export async function startBinary(
  env: Record<string, string> = {},
  options: { cwd?: string; timeoutMs?: number } = {},
): Promise<RunningBinary> {
  if (!existsSync(BINARY)) throw new Error(`${BINARY} is missing: run 'bun run build' in app/ first`);
  const port = env.PORT ? Number(env.PORT) : freePort();
  // The default store is SQLite under DATA_DIR: each binary gets a fresh one unless the test names
  // one, so no test sees another's (or an earlier run's) messages. Removed when the binary exits.
  const ownDataDir = env.DATA_DIR || env.STORE || env.REDIS_URL ? undefined : mkdtempSync(join(tmpdir(), "chat-data-"));
  const proc = Bun.spawn([BINARY], {
    cwd: options.cwd ?? join(import.meta.dir, ".."),
    env: {
      PATH: process.env.PATH ?? "",
      HOST: "127.0.0.1",
      LOG_LEVEL: "info",
      ...UNLIMITED,
      ...(ownDataDir ? { DATA_DIR: ownDataDir } : {}),
      ...env,
      PORT: String(port),
    },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  if (ownDataDir) void proc.exited.then(() => rmSync(ownDataDir, { recursive: true, force: true }));
  let out = "";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    const reader = stream.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      out += decoder.decode(value, { stream: true });
    }
  };
  void pump(proc.stdout);
  void pump(proc.stderr);
  const httpUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`binary exited with ${proc.exitCode}:\n${out}`);
    try {
      const res = await fetch(`${httpUrl}/health`);
      if (res.ok) break;
    } catch {}
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`binary did not answer /health in time:\n${out}`);
    }
    await Bun.sleep(50);
  }
  return {
    proc,
    port,
    httpUrl,
    output: () => out,
    stop: async (signal = "SIGTERM") => {
      if (proc.exitCode === null) proc.kill(signal);
      return await proc.exited;
    },
  };
}
