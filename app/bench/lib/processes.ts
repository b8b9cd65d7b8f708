// Child processes of the benchmark: every one is tracked so that none outlives the run, whatever
// way the run ends (normal exit, failure, Ctrl-C, SIGTERM).

import type { Subprocess } from "bun";
import { openFileLimits } from "./cpu";

export interface Child {
  name: string;
  proc: Subprocess<"pipe", "pipe", "pipe">;
  /** Last lines of stdout and stderr, for failure messages. */
  tail(): string;
  /** Resolves with each stdout line as it arrives. */
  nextLine(timeoutMs: number, what: string): Promise<string>;
  write(line: string): void;
}

const live = new Set<Subprocess>();

function killAll() {
  for (const proc of live) {
    try {
      proc.kill("SIGKILL");
    } catch {}
  }
  live.clear();
}

process.on("exit", killAll);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    process.stderr.write(`\n${signal}: stopping every benchmark process\n`);
    killAll();
    process.exit(130);
  });
}

export class BenchError extends Error {}

export function spawnChild(
  name: string,
  cmd: string[],
  options: {
    env?: Record<string, string>;
    cwd: string;
    minOpenFiles?: number;
    /** Called with every line the child writes to stderr (a log the benchmark reads, such as the GC's). */
    onStderrLine?: (line: string) => void;
  },
): Child {
  const proc = Bun.spawn(cmd, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  live.add(proc);
  void proc.exited.then(() => live.delete(proc));
  if (options.minOpenFiles) ensureOpenFiles(name, proc.pid, options.minOpenFiles);

  const log: string[] = [];
  const lines: string[] = [];
  let wake: (() => void) | undefined;
  const remember = (line: string) => {
    log.push(line);
    if (log.length > 40) log.shift();
  };
  const pump = async (stream: ReadableStream<Uint8Array>, isStdout: boolean) => {
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of stream) {
      buffered += decoder.decode(chunk, { stream: true });
      let newline: number;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        remember(line);
        if (!isStdout) options.onStderrLine?.(line);
        if (isStdout) {
          lines.push(line);
          wake?.();
        }
      }
    }
    if (buffered) remember(buffered);
    wake?.();
  };
  const stdoutDone = pump(proc.stdout, true);
  void pump(proc.stderr, false);

  return {
    name,
    proc,
    tail: () => log.join("\n"),
    write(line) {
      proc.stdin.write(`${line}\n`);
      proc.stdin.flush();
    },
    async nextLine(timeoutMs, what) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const line = lines.shift();
        if (line !== undefined) return line;
        if (proc.exitCode !== null || proc.signalCode !== null) {
          await stdoutDone;
          const late = lines.shift();
          if (late !== undefined) return late;
          throw new BenchError(
            `${name} exited (${proc.exitCode ?? proc.signalCode}) while ${what}:\n${indent(this.tail())}`,
          );
        }
        const left = deadline - Date.now();
        if (left <= 0)
          throw new BenchError(`${name}: no answer within ${timeoutMs} ms while ${what}:\n${indent(this.tail())}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(left, 1000));
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    },
  };
}

/** Raises a child's soft limit on open files up to its hard limit when it needs more. */
function ensureOpenFiles(name: string, pid: number, needed: number) {
  const { soft, hard } = openFileLimits(pid);
  if (soft >= needed) return;
  if (hard < needed) {
    throw new BenchError(
      `${name} needs ${needed} open files but the hard limit is ${hard}: use fewer connections or more load processes`,
    );
  }
  const result = Bun.spawnSync(["prlimit", `--pid=${pid}`, `--nofile=${hard}:${hard}`]);
  if (result.exitCode !== 0)
    throw new BenchError(`could not raise the open-file limit of ${name}: ${result.stderr.toString().trim()}`);
}

/** Asks politely, then forces: resolves once the process is gone. */
export async function stopChild(child: Child, graceMs = 5000) {
  const { proc } = child;
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill("SIGTERM");
  const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(graceMs).then(() => false)]);
  if (!exited) {
    proc.kill("SIGKILL");
    await proc.exited;
  }
}

/** Waits until GET `path` (/health by default) answers 200, failing fast if the process exits first. */
export async function waitHealthy(child: Child, port: number, timeoutMs: number, path = "/health") {
  const deadline = Date.now() + timeoutMs;
  let delay = 25;
  for (;;) {
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) {
      throw new BenchError(
        `${child.name} exited (${child.proc.exitCode ?? child.proc.signalCode}) before it was ready:\n${indent(child.tail())}`,
      );
    }
    try {
      const response = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(1000) });
      if (response.ok) return;
    } catch {}
    if (Date.now() > deadline)
      throw new BenchError(`${child.name} did not answer ${path} within ${timeoutMs} ms:\n${indent(child.tail())}`);
    await Bun.sleep(delay);
    delay = Math.min(delay * 2, 500);
  }
}

// The tests' picker: a free loopback port outside the kernel's ephemeral range.
export { freePort } from "../../test/helpers/ports";

export function indent(text: string) {
  return text
    .split("\n")
    .map((line) => `    ${line}`)
    .join("\n");
}
