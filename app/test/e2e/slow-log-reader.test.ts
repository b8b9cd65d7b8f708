// A log reader that stalls rather than breaks (a collector paused, a terminal scrolled back): what
// waits for it stays bounded, lines past the bound are dropped and counted, and the count is logged
// once the reader catches up. Bun buffers whatever a pipe does not take without bound, so the
// bound is the logger's own.
import { expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { createLogger } from "../../src/observability/logger";

const LINES = 20_000;
const PADDING = "x".repeat(1000);

test("a stalled stdout reader holds at most about 1 MiB of lines; the rest are counted, then reported", async () => {
  // A real pipe into a reader that stops itself before reading anything, until SIGCONT.
  const reader = spawn("bash", ["-c", "kill -STOP $$; exec cat"], { stdio: ["pipe", "pipe", "inherit"] });
  const chunks: Buffer[] = [];
  reader.stdout!.on("data", (chunk: Buffer) => chunks.push(chunk));
  const ended = new Promise((resolve) => reader.on("exit", resolve));
  try {
    const logger = createLogger(
      { logLevel: "info", logDir: "", instanceId: "slow-reader", color: "none", version: "test" },
      { stdout: reader.stdin!, stderr: process.stderr },
    );
    for (let i = 0; i < LINES; i++) logger.info("line", { i, padding: PADDING });

    process.kill(reader.pid!, "SIGCONT");
    // The reader catches up with what was held; the next line carries the count of the dropped ones.
    const received = () => Buffer.concat(chunks).toString("utf8");
    const deadline = Date.now() + 10_000;
    let probes = 0;
    while (!received().includes('"message":"caught up"')) {
      if (Date.now() > deadline) throw new Error("the reader never got the line after the stall");
      // Dropped too while the held lines are still on their way.
      logger.info("caught up");
      probes++;
      await Bun.sleep(200);
    }
    reader.stdin!.end();
    await ended;

    const lines = received()
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    const held = lines.filter((l) => l.message === "line");
    const caughtUp = lines.filter((l) => l.message === "caught up");
    const notices = lines.filter((l) => l.message === "log lines dropped: the reader is too slow");
    expect(Buffer.byteLength(received())).toBeLessThan(2 * 1024 * 1024);
    expect(held.length).toBeGreaterThan(0);
    expect(notices.length).toBeGreaterThan(0);
    // Every line was either written or counted in a notice.
    const dropped = notices.reduce((sum, n) => sum + n.dropped, 0);
    expect(held.length + caughtUp.length + dropped).toBe(LINES + probes);
    // What was held arrives in order, and nothing after the stall is lost.
    expect(held.map((l) => l.i)).toEqual([...Array(held.length).keys()]);
  } finally {
    reader.kill("SIGKILL");
  }
});
