// A blue-green setup for the deploy tests, all on loopback: a real Redis, the compiled binary as the
// colors (laid out where DEPLOY_RUNTIME=local keeps them: <state>/<color>/server.pid), a temporary
// copy of traefik/dynamic, and the Traefik double in front. `deploy(...)` runs the real script.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { BINARY, freePort } from "../helpers/binary";
import { startRedis, type TestRedis } from "../helpers/redis";
import { startTraefikDouble, type TraefikDouble } from "./traefik-double";

export const REPO = join(import.meta.dir, "..", "..", "..");
export const SCRIPT = join(REPO, "scripts", "blue-green-deploy.sh");

export type Color = "blue" | "green";

export interface ScriptRun {
  code: number;
  stdout: string;
  stderr: string;
  /** Wall time of the run in ms. */
  ms: number;
}

export interface RunningScript {
  /** Output so far. */
  output(): string;
  /** Sends the script a signal, as an operator's Ctrl-C (SIGINT) would. */
  signal(name: NodeJS.Signals): void;
  done: Promise<ScriptRun>;
}

/** Small timings for tests; the docs state them next to the figures they produce. */
export const TEST_TIMINGS = {
  DRAIN_TIMEOUT: "4000",
  DRAIN_JITTER_MS: "1500",
  SMOKE_VUS: "3",
  SMOKE_DURATION: "3s",
  GATE_SECONDS: "3",
  GATE_INTERVAL: "1",
  READY_TIMEOUT: "15",
  VERIFY_COUNT: "3",
  VERIFY_TIMEOUT: "10",
  POLL_MAX_SLEEP: "1",
};

export class DeploySetup {
  readonly dir = mkdtempSync(join(tmpdir(), "chat-deploy-"));
  readonly dynamicDir = join(this.dir, "dynamic");
  readonly stateDir = join(this.dir, "state");
  /** The Prometheus file_sd file the script keeps (PROMETHEUS_TARGETS_FILE). */
  readonly targetsFile = join(this.dir, "prometheus", "websocket.yml");
  readonly ports: Record<Color, number> = { blue: freePort(), green: freePort() };
  readonly prefix: string;
  readonly front: TraefikDouble;

  private constructor(readonly redis: TestRedis) {
    this.prefix = redis.prefix();
    cpSync(join(REPO, "traefik", "dynamic"), this.dynamicDir, { recursive: true });
    mkdirSync(this.stateDir, { recursive: true });
    mkdirSync(join(this.dir, "prometheus"), { recursive: true });
    writeFileSync(
      join(this.stateDir, "local.env"),
      [
        `REDIS_URL=${redis.url}`,
        `REDIS_KEY_PREFIX=${this.prefix}`,
        "LOG_LEVEL=warn",
        "HISTORY_SIZE=5000",
        // Every test client connects from 127.0.0.1: the per-IP upgrade limit would count 200
        // users as one. The double sends X-Forwarded-For like Traefik, so the colors trust it.
        "TRUSTED_PROXIES=127.0.0.1",
        "CONNECT_RATE_PER_IP=1000",
        "CONNECT_BURST_PER_IP=1000",
        "",
      ].join("\n"),
    );
    this.front = startTraefikDouble(this.dynamicDir, {
      "websocket-blue": `http://127.0.0.1:${this.ports.blue}`,
      "websocket-green": `http://127.0.0.1:${this.ports.green}`,
    });
  }

  static async create(redis?: TestRedis) {
    return new DeploySetup(redis ?? (await startRedis()));
  }

  /** Environment of one script run: the local runtime pointed at this setup. */
  env(extra: Record<string, string> = {}): Record<string, string> {
    return {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: process.env.HOME ?? this.dir,
      USER: "deploy-test",
      DEPLOY_RUNTIME: "local",
      DEPLOY_STATE_DIR: this.stateDir,
      TRAEFIK_DYNAMIC_DIR: this.dynamicDir,
      PROMETHEUS_TARGETS_FILE: this.targetsFile,
      FRONT_URL: this.front.url,
      TRAEFIK_API_URL: this.front.apiUrl,
      TRAEFIK_METRICS_URL: this.front.metricsUrl,
      BLUE_PORT: String(this.ports.blue),
      GREEN_PORT: String(this.ports.green),
      DEPLOY_BINARY: BINARY,
      ...TEST_TIMINGS,
      ...extra,
    };
  }

  /** Starts the real script; resolves `done` when it exits. */
  start(args: string[], extra: Record<string, string> = {}): RunningScript {
    const started = Date.now();
    const proc = Bun.spawn(["bash", SCRIPT, ...args], {
      cwd: REPO,
      env: this.env(extra),
      stdout: "pipe",
      stderr: "pipe",
    });
    let stdout = "";
    let stderr = "";
    const pump = async (stream: ReadableStream<Uint8Array>, add: (s: string) => void) => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) add(decoder.decode(chunk, { stream: true }));
    };
    const pumped = Promise.all([pump(proc.stdout, (s) => (stdout += s)), pump(proc.stderr, (s) => (stderr += s))]);
    return {
      output: () => stdout + stderr,
      signal: (name) => proc.kill(name),
      done: (async () => {
        const code = await proc.exited;
        await pumped;
        // DEPLOY_TEST_VERBOSE=1 shows what the script printed, for reading a run.
        if (process.env.DEPLOY_TEST_VERBOSE)
          process.stderr.write(`\n$ blue-green-deploy.sh ${args.join(" ")} (exit ${code})\n${stdout}${stderr}`);
        return { code, stdout, stderr, ms: Date.now() - started };
      })(),
    };
  }

  run(args: string[], extra: Record<string, string> = {}): Promise<ScriptRun> {
    return this.start(args, extra).done;
  }

  /**
   * Starts a color the way the local runtime does (binary copied into <state>/<color>/, pid file),
   * so the script finds it running. `env` adds to the shared env file.
   */
  async startColor(color: Color, env: Record<string, string> = {}) {
    const dir = join(this.stateDir, color);
    mkdirSync(dir, { recursive: true });
    const bin = join(dir, "realtime-server");
    cpSync(BINARY, bin);
    const shared = Object.fromEntries(
      readFileSync(join(this.stateDir, "local.env"), "utf8")
        .split("\n")
        .filter((l) => l.includes("="))
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
    const proc = Bun.spawn([bin], {
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? "",
        ...shared,
        DRAIN_TIMEOUT: TEST_TIMINGS.DRAIN_TIMEOUT,
        DRAIN_JITTER_MS: TEST_TIMINGS.DRAIN_JITTER_MS,
        ...env,
        PORT: String(this.ports[color]),
        COLOR: color,
        INSTANCE_ID: `websocket-${color}`,
        HOST: "127.0.0.1",
      },
      stdout: "ignore",
      stderr: "ignore",
    });
    writeFileSync(join(dir, "server.pid"), `${proc.pid}\n`);
    const deadline = Date.now() + 15_000;
    while ((await this.health(color))?.ready !== true) {
      if (proc.exitCode !== null) throw new Error(`${color} exited with ${proc.exitCode}`);
      if (Date.now() > deadline) throw new Error(`${color} did not become ready`);
      await Bun.sleep(25);
    }
  }

  /** Settings only one color reads (<state>/<color>.env), such as a broken configuration. */
  colorEnv(color: Color, env: Record<string, string>) {
    writeFileSync(
      join(this.stateDir, `${color}.env`),
      Object.entries(env)
        .map(([k, v]) => `${k}=${v}\n`)
        .join(""),
    );
  }

  async health(color: Color): Promise<{ ready: boolean; color?: string } | undefined> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.ports[color]}/health/ready`);
      return (await res.json()) as { ready: boolean; color?: string };
    } catch {
      return undefined;
    }
  }

  /** Whether the color's process (per its pid file) is alive. */
  running(color: Color): boolean {
    const file = join(this.stateDir, color, "server.pid");
    if (!existsSync(file)) return false;
    const pid = Number(readFileSync(file, "utf8").trim());
    try {
      process.kill(pid, 0);
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("realtime-server");
    } catch {
      return false;
    }
  }

  /** The colors the targets file tells Prometheus to scrape, with their addresses and labels. */
  scraped(): { color: string; target: string; instance: string }[] | undefined {
    if (!existsSync(this.targetsFile)) return undefined;
    const groups = parse(readFileSync(this.targetsFile, "utf8")) as {
      targets: string[];
      labels: Record<string, string>;
    }[];
    return groups.map((g) => ({ color: g.labels.color!, target: g.targets.join(","), instance: g.labels.instance! }));
  }

  /** What `scraped()` should say when exactly these colors are listed. */
  expectedScrape(...colors: Color[]) {
    return colors.map((color) => ({ color, target: `127.0.0.1:${this.ports[color]}`, instance: `websocket-${color}` }));
  }

  activeFile(): string {
    return readFileSync(join(this.dynamicDir, "active-color.yml"), "utf8");
  }

  /** What the front door's /health says: the color a new connection reaches. */
  async frontColor(): Promise<string | undefined> {
    try {
      return ((await (await fetch(`${this.front.url}/health`)).json()) as { color: string }).color;
    } catch {
      return undefined;
    }
  }

  history(): string[] {
    const file = join(this.stateDir, "history.tsv");
    return existsSync(file) ? readFileSync(file, "utf8").trim().split("\n").filter(Boolean) : [];
  }

  /** Kills whatever the tests or the script left running and removes the files. */
  async stop(options: { keepRedis?: boolean } = {}) {
    for (const color of ["blue", "green"] as const) {
      const file = join(this.stateDir, color, "server.pid");
      if (!existsSync(file)) continue;
      const pid = Number(readFileSync(file, "utf8").trim());
      if (this.running(color)) process.kill(pid, "SIGKILL");
    }
    await this.front.stop();
    if (!options.keepRedis) await this.redis.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
