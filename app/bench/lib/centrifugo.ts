// Centrifugo as the scale-out benchmark's baseline: the pinned release (scripts/lib.sh
// centrifugo_bin: on PATH, in .tools/bin, or built there with `go install`), nodes on the run's
// Redis with history and recovery on, clients admitted without tokens (insecure client mode) so
// the load generators connect, subscribe and publish as they do to this server.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Child, freePort, spawnChild, stopChild, waitHealthy } from "./processes";
import type { RedisServer } from "./redis-server";
import { APP_DIR } from "./targets";

const ROOT = join(APP_DIR, "..");
/** Where the generated configuration files go (ignored by git). */
const CONFIG_DIR = join(APP_DIR, "test-output", "bench");

/** The binary's path, or why there is none (printed as a note; the run goes on without it). */
export async function centrifugoBinary(): Promise<{ path: string; version: string } | { skipped: string }> {
  const script = `. "${ROOT}/scripts/lib.sh" && path=$(centrifugo_bin "${ROOT}") && printf '%s %s\\n' "$(centrifugo_release "$path")" "$path"`;
  const proc = Bun.spawn(["bash", "-c", script], { stdout: "pipe", stderr: "inherit" });
  const [version, path] = (await new Response(proc.stdout).text()).trim().split(" ");
  if ((await proc.exited) !== 0 || !path)
    return { skipped: "no Centrifugo binary and no Go toolchain to build one (go install)" };
  return { path, version: `Centrifugo ${version}` };
}

export interface CentrifugoNode {
  name: string;
  child: Child;
  port: number;
}

let runs = 0;

/**
 * Starts `count` Centrifugo nodes sharing the run's Redis (their own key prefix): a channel keeps
 * the last 1,000 publications for 10 minutes, and every subscription is recoverable and positioned
 * (force_recovery, force_positioning), the guarantees this server gives every room member.
 */
export async function startCentrifugo(
  binary: string,
  count: number,
  redis: RedisServer | undefined,
): Promise<CentrifugoNode[]> {
  mkdirSync(CONFIG_DIR, { recursive: true });
  const prefix = `centrifugo-bench${++runs}-${process.pid}`;
  const nodes: CentrifugoNode[] = [];
  for (let k = 0; k < count; k++) {
    const port = freePort();
    const name = `centrifugo-${"ab"[k]}`;
    const config = {
      http_server: { address: "127.0.0.1", port },
      log: { level: "error" },
      health: { enabled: true },
      client: { insecure: true, allowed_origins: ["*"] },
      // Without Redis, one node on its memory engine (a baseline for one process, no hop).
      engine: redis ? { type: "redis", redis: { address: [redis.url], prefix } } : { type: "memory" },
      channel: {
        without_namespace: {
          history_size: 1000,
          history_ttl: "600s",
          force_recovery: true,
          force_positioning: true,
          allow_subscribe_for_client: true,
          allow_publish_for_client: true,
        },
      },
    };
    const file = join(CONFIG_DIR, `${prefix}-${name}.json`);
    await Bun.write(file, JSON.stringify(config, null, 2));
    nodes.push({ name, port, child: spawnChild(name, [binary, "--config", file], { cwd: APP_DIR }) });
  }
  try {
    await Promise.all(nodes.map((n) => waitHealthy(n.child, n.port, 20_000, "/health")));
  } catch (error) {
    await Promise.all(nodes.map((n) => stopChild(n.child)));
    throw error;
  }
  return nodes;
}
