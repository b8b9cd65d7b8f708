import winston from "winston";
import DailyRotateFile from "winston-daily-rotate-file";
import type { Config } from "../config";

export type Logger = winston.Logger;

/** The part of a writable stream (process.stdout, process.stderr) the console output needs. */
export interface OutputStream {
  write(chunk: string, callback: (error?: Error | null) => void): boolean;
  on(event: "error", listener: (error: Error) => void): unknown;
}

/** Bytes of log lines allowed to wait for a slow reader; lines past that are dropped. */
const MAX_PENDING_BYTES = 1 << 20;
const MESSAGE = Symbol.for("message");

/**
 * One stream a log collector reads, which can break or stall (the collector restarts, `docker logs`
 * detaches, a terminal closes). Guarantees: at most MAX_PENDING_BYTES wait for a slow reader, and
 * lines past that are dropped and counted; the first write error (EPIPE or any other) makes the
 * output silent for good and is reported once through `onFailure`; no write is ever retried.
 */
export class StreamOutput {
  private pending = 0;
  private dropped = 0;
  private failed = false;
  private readonly failureListeners = new Set<(error: Error) => void>();

  /** The one output of a stream: every logger of the process shares it, and its broken state. */
  static of(stream: OutputStream): StreamOutput {
    let output = outputs.get(stream);
    if (!output) outputs.set(stream, (output = new StreamOutput(stream)));
    return output;
  }

  private constructor(private readonly stream: OutputStream) {
    // Without a listener, Bun raises a stdio write error as an uncaught exception, whose handler logs
    // it to the same stream: one failing write would feed the next, forever.
    stream.on("error", (error) => this.fail(error));
  }

  /** Calls `listener` once, when the stream fails. */
  onFailure(listener: (error: Error) => void): void {
    if (!this.failed) this.failureListeners.add(listener);
  }

  writeLine(line: string): void {
    if (this.failed) return;
    if (this.pending > MAX_PENDING_BYTES) {
      this.dropped++;
      return;
    }
    if (this.dropped > 0) {
      const notice = { level: "warn", message: "log lines dropped: the reader is too slow", dropped: this.dropped };
      this.dropped = 0;
      this.send(`${JSON.stringify({ ...notice, timestamp: new Date().toISOString() })}\n`);
    }
    this.send(line);
  }

  private send(line: string) {
    // Bun buffers whatever the pipe does not take without bound and reports none of it in
    // writableLength; the write callbacks are the only measure of what still waits.
    const bytes = Buffer.byteLength(line);
    this.pending += bytes;
    this.stream.write(line, (error) => {
      this.pending -= bytes;
      if (error) this.fail(error);
    });
  }

  private fail(error: Error) {
    if (this.failed) return;
    this.failed = true;
    for (const listener of this.failureListeners) listener(error);
    this.failureListeners.clear();
  }
}

const outputs = new WeakMap<OutputStream, StreamOutput>();

// winston exports its transport base class as `Transport`; its type declarations name it `transport`.
const TransportBase = (winston as unknown as { Transport: typeof winston.transport }).Transport;

/** A winston transport writing each formatted line to a StreamOutput. */
class ConsoleTransport extends TransportBase {
  constructor(private readonly output: StreamOutput) {
    super();
  }

  override log(info: Record<symbol, unknown>, next: () => void) {
    this.output.writeLine(`${String(info[MESSAGE])}\n`);
    next();
  }
}

/**
 * JSON lines to stdout and, when LOG_DIR is set, to daily files: application logs kept 14 days,
 * error logs 30 days, both gzipped. A rotation or disk error is logged and never stops the server.
 * A broken stdout or stderr is dropped for good; with LOG_DIR set the files say so in one line.
 */
export function createLogger(
  config: Pick<Config, "logLevel" | "logDir" | "instanceId" | "color" | "version">,
  streams: { stdout: OutputStream; stderr: OutputStream } = process,
): Logger {
  const stderr = StreamOutput.of(streams.stderr);
  const stdout = StreamOutput.of(streams.stdout);
  const transports: winston.transport[] = [new ConsoleTransport(stdout)];
  if (config.logDir) {
    const common = { dirname: config.logDir, datePattern: "YYYY-MM-DD", zippedArchive: true, createSymlink: false };
    transports.push(
      new DailyRotateFile({ ...common, filename: "app-%DATE%.log", maxFiles: "14d" }),
      new DailyRotateFile({ ...common, filename: "error-%DATE%.log", maxFiles: "30d", level: "error" }),
    );
  }
  const logger = winston.createLogger({
    level: config.logLevel,
    format: winston.format.combine(
      winston.format.timestamp(),
      winston.format.errors({ stack: true }),
      winston.format.json(),
    ),
    defaultMeta: {
      service: "realtime-chat",
      instanceId: config.instanceId,
      color: config.color,
      version: config.version,
    },
    transports,
    exitOnError: false,
  });
  for (const transport of transports.slice(1)) {
    transport.on("error", (error: Error) => {
      // A full disk or a failed rotation must not take the chat down; say it on stderr once per error.
      stderr.writeLine(
        `${JSON.stringify({ level: "error", message: "log transport failed", error: error.message })}\n`,
      );
    });
  }

  if (config.logDir) {
    const reportBroken = (stream: "stdout" | "stderr") => (error: Error) =>
      // From its own task: the failure can surface inside a write of the logger's own pipeline.
      setImmediate(() =>
        logger.warn("output stream failed; logging to files only", {
          stream,
          code: (error as NodeJS.ErrnoException).code,
          error: error.message,
        }),
      );
    stdout.onFailure(reportBroken("stdout"));
    stderr.onFailure(reportBroken("stderr"));
  }
  return logger;
}

/** Resolves once every transport has written what it buffered, or after `timeoutMs`. */
export function flushLogger(logger: Logger, timeoutMs = 2000): Promise<void> {
  const files = logger.transports.filter((t) => t instanceof DailyRotateFile);
  const flushed = new Promise<void>((resolve) => {
    logger.once("finish", resolve);
    logger.end();
  }).then(() =>
    // A file transport reports "finish" once it has handed its lines to its file stream, before they
    // are written; close() ends that stream and emits "finish" again once the file has them.
    Promise.all(
      files.map(
        (file) =>
          new Promise<void>((resolve) => {
            file.once("finish", () => resolve());
            file.close?.();
          }),
      ),
    ),
  );
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    void flushed.then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
