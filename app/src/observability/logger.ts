import winston from "winston";
import DailyRotateFile from "winston-daily-rotate-file";
import type { Config } from "../config";

export type Logger = winston.Logger;

/**
 * JSON lines to stdout and, when LOG_DIR is set, to daily files: application logs kept 14 days,
 * error logs 30 days, both gzipped. A rotation or disk error is logged and never stops the server.
 */
export function createLogger(config: Pick<Config, "logLevel" | "logDir" | "instanceId" | "color" | "version">): Logger {
  const transports: winston.transport[] = [new winston.transports.Console({ handleExceptions: false })];
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
  for (const transport of transports) {
    transport.on("error", (error: Error) => {
      // A full disk or a failed rotation must not take the chat down; say it on stderr once per error.
      process.stderr.write(
        `${JSON.stringify({ level: "error", message: "log transport failed", error: error.message })}\n`,
      );
    });
  }
  return logger;
}

/** Resolves once every transport has written what it buffered. */
export function flushLogger(logger: Logger, timeoutMs = 2000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    logger.on("finish", () => {
      clearTimeout(timer);
      resolve();
    });
    logger.end();
  });
}
