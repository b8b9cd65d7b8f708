// The three servers the benchmark compares, and how to start each one on a given port.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Target {
  id: "raw-bun" | "node-ws" | "chat" | "chat-plain" | "chat-sqlite" | "elysia-route" | "elysia-upgrade";
  label: string;
  /** How it is started, for the report. */
  describe: string;
  command(port: number): { cmd: string[]; env: Record<string, string> };
  /** WebSocket path of client i is `${prefix}${i}`. */
  broadcastPathPrefix: string;
  /** Query string of the broadcast clients' paths (`?batch=1` for batched frames). */
  broadcastQuery: string;
  idlePathPrefix: string;
  /** The server greets each connection with a frame (the chat server's `connection_established`). */
  greets: boolean;
}

export const APP_DIR = join(import.meta.dir, "..", "..");
const BENCH_DIR = join(APP_DIR, "bench");
export const BINARY = join(APP_DIR, "dist", "realtime-server");

/**
 * How the chat server is started for a benchmark: the compiled binary when there is one, logs and
 * heartbeats out of the way, limits raised out of the way. `env` adds or overrides variables (the
 * scale-out benchmark sets REDIS_URL, REDIS_KEY_PREFIX and INSTANCE_ID).
 */
export function chatCommand(
  port: number,
  env: Record<string, string> = {},
): { cmd: string[]; env: Record<string, string> } {
  return {
    cmd: existsSync(BINARY) ? [BINARY] : [process.execPath, join(APP_DIR, "src", "index.ts")],
    env: {
      PORT: String(port),
      HOST: "127.0.0.1",
      MAX_CONNECTIONS: "20000",
      LOG_LEVEL: "warn",
      LOG_DIR: "",
      // Heartbeats and idle closing would add traffic the baselines do not have.
      HEARTBEAT_INTERVAL: "600000",
      PONG_TIMEOUT: "600000",
      CONNECTION_TIMEOUT: "0",
      // Every client comes from 127.0.0.1 and sends far above a person's rate: the limits stay
      // in the path (their cost is measured) but are raised out of the way.
      CONNECT_RATE_PER_IP: "100000",
      CONNECT_BURST_PER_IP: "100000",
      FRAME_RATE: "100000",
      FRAME_BURST: "100000",
      DRAIN_TIMEOUT: "1000",
      DRAIN_JITTER_MS: "0",
      REDIS_URL: "",
      // The hot history alone unless a run asks for the message database (chat-sqlite).
      STORE: "memory",
      ...env,
    },
  };
}

/** A fresh, empty DATA_DIR for one server start, removed when the benchmark exits. */
function freshDataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "chat-bench-data-"));
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function chatDescription(): string {
  return existsSync(BINARY)
    ? "dist/realtime-server (compiled binary)"
    : "bun src/index.ts (no compiled binary in dist/)";
}

export function targets(): Target[] {
  const bun = process.execPath;
  const node = Bun.which("node");
  return [
    {
      id: "raw-bun",
      label: "raw Bun.serve + publish",
      describe: `bun bench/baselines/raw-bun.ts`,
      command: (port) => ({ cmd: [bun, join(BENCH_DIR, "baselines", "raw-bun.ts")], env: { PORT: String(port) } }),
      broadcastPathPrefix: "/ws/bench",
      broadcastQuery: "",
      idlePathPrefix: "/ws/idle",
      greets: false,
    },
    {
      id: "node-ws",
      label: "Node + ws (loop)",
      describe: `node bench/baselines/node-ws.mjs`,
      command: (port) => {
        if (!node) throw new Error("node is not on PATH: the Node + ws baseline needs Node.js");
        return { cmd: [node, join(BENCH_DIR, "baselines", "node-ws.mjs")], env: { PORT: String(port) } };
      },
      broadcastPathPrefix: "/ws/bench",
      broadcastQuery: "",
      idlePathPrefix: "/ws/idle",
      greets: false,
    },
    {
      id: "chat",
      label: "this server, batched frames",
      describe: chatDescription(),
      command: (port) => chatCommand(port),
      // connectionId must be 8-64 characters: "bench000", "idle000000".
      broadcastPathPrefix: "/ws/chat/bench",
      broadcastQuery: "?batch=1",
      idlePathPrefix: "/ws/chat/idle",
      greets: true,
    },
    {
      id: "chat-plain",
      label: "this server, plain frames",
      describe: chatDescription(),
      command: (port) => chatCommand(port),
      broadcastPathPrefix: "/ws/chat/bench",
      broadcastQuery: "",
      idlePathPrefix: "/ws/chat/idle",
      greets: true,
    },
    {
      id: "chat-sqlite",
      label: "this server, SQLite store",
      describe: `${chatDescription()} with STORE=sqlite, DATA_DIR a fresh temporary directory`,
      command: (port) => chatCommand(port, { STORE: "sqlite", DATA_DIR: freshDataDir() }),
      broadcastPathPrefix: "/ws/chat/bench",
      broadcastQuery: "?batch=1",
      idlePathPrefix: "/ws/chat/idle",
      greets: true,
    },
    ...(["route", "upgrade"] as const).map(
      (mode): Target => ({
        id: `elysia-${mode}`,
        label: `Elysia ${mode === "route" ? ".ws() route" : "GET + server.upgrade"}`,
        describe: `ELYSIA_WS=${mode} bun bench/baselines/elysia-ws.ts`,
        command: (port) => ({
          cmd: [bun, join(BENCH_DIR, "baselines", "elysia-ws.ts")],
          env: { PORT: String(port), ELYSIA_WS: mode },
        }),
        broadcastPathPrefix: "/ws/bench",
        broadcastQuery: "",
        idlePathPrefix: "/ws/idle",
        greets: false,
      }),
    ),
  ];
}
