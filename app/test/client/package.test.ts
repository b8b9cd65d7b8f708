// The client as a package an application installs: `npm pack`, an install of the tarball into an
// empty project (no network: the package has no dependencies), a strict TypeScript compile of an
// application against its .d.ts, and that application run under Node and Bun against the compiled
// server binary: connect, join, send, receive, resume, token renewal, errors, close.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import clientPkg from "../../client/package.json";
import { type RunningBinary, startBinary } from "../helpers/binary";
import { hsToken, TEST_SECRET } from "../helpers/jwt";

const APP = join(import.meta.dir, "..", "..");
const CLIENT = join(APP, "client");
const TSC = join(APP, "node_modules", ".bin", "tsc");
/** npm pack runs the package's build (prepack): tsc takes a few seconds on a busy machine. */
setDefaultTimeout(60_000);

let work: string;
let project: string;
let binary: RunningBinary;

function run(cmd: string[], cwd: string, env: Record<string, string> = {}) {
  const result = Bun.spawnSync(cmd, {
    cwd,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: work,
      // npm writes its cache and logs here instead of the user's home.
      npm_config_cache: join(work, "npm-cache"),
      npm_config_update_notifier: "false",
      ...env,
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  const out = result.stdout.toString();
  const err = result.stderr.toString();
  if (result.exitCode !== 0) throw new Error(`${cmd.join(" ")} exited with ${result.exitCode}:\n${out}\n${err}`);
  return out;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "chat-client-package-"));
  project = join(work, "app");
  mkdirSync(project);
  binary = await startBinary({ AUTH_REQUIRED: "true", JWT_SECRET: TEST_SECRET, LOG_LEVEL: "error" }, { cwd: work });
});

afterAll(async () => {
  await binary?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("the client package", () => {
  let tarball: string;

  test("npm pack: the build, its type declarations and the README; no source, no page", () => {
    const [packed] = JSON.parse(run(["npm", "pack", "--json", "--pack-destination", work], CLIENT));
    tarball = join(work, packed.filename);
    const files = (packed.files as { path: string }[]).map((f) => f.path).sort();
    expect(files).toContain("package.json");
    expect(files).toContain("README.md");
    expect(files).toContain("dist/index.js");
    expect(files).toContain("dist/index.d.ts");
    expect(files.filter((f) => !/^(package\.json|README\.md|dist\/[a-z-]+\.(js|d\.ts))$/.test(f))).toEqual([]);
    expect(packed.name).toBe(clientPkg.name);
  });

  test("installs into an empty project without a network, with no dependency", () => {
    writeFileSync(
      join(project, "package.json"),
      JSON.stringify({ name: "chat-app", version: "0.0.0", private: true, type: "module" }),
    );
    run(["npm", "install", "--offline", "--no-audit", "--no-fund", tarball], project);
    const installed = readdirSync(join(project, "node_modules")).filter((d) => !d.startsWith("."));
    expect(installed).toEqual([clientPkg.name.split("/")[0]!]);
    const manifest = JSON.parse(run(["npm", "ls", "--json", "--all"], project));
    expect(Object.keys(manifest.dependencies)).toEqual([clientPkg.name]);
    expect(manifest.dependencies[clientPkg.name].dependencies).toBeUndefined();
  });

  test("an application compiles against it with tsc --strict", () => {
    copyFileSync(join(import.meta.dir, "package", "consumer.ts"), join(project, "consumer.ts"));
    writeFileSync(
      join(project, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          // A Node application: no DOM library; the package's types must not need one.
          lib: ["ES2022"],
          types: ["node"],
          typeRoots: [join(APP, "node_modules", "@types")],
          skipLibCheck: false,
          outDir: "out",
        },
        files: ["consumer.ts"],
      }),
    );
    run([TSC, "-p", "."], project);
    expect(readdirSync(join(project, "out"))).toEqual(["consumer.js"]);
  });

  async function runConsumer(runtime: "node" | "bun") {
    const alice = await hsToken("alice", { expiresInSeconds: 60 });
    const cmd =
      runtime === "bun"
        ? [process.execPath, "out/consumer.js"]
        : // Node 20 and 21 have a global WebSocket behind a flag; 22 and later have it by default.
          ["node", ...(nodeMajor() < 22 ? ["--experimental-websocket"] : []), "out/consumer.js"];
    const out = run(cmd, project, {
      CHAT_URL: binary.httpUrl,
      RUNTIME: runtime,
      TOKEN_ALICE: alice,
      TOKEN_ALICE_FRESH: await hsToken("alice", { expiresInSeconds: 600 }),
      TOKEN_BOB: await hsToken("bob", { expiresInSeconds: 600 }),
    });
    return JSON.parse(out.trim().split("\n").at(-1)!);
  }

  for (const runtime of ["node", "bun"] as const) {
    test(`runs under ${runtime} against the compiled server`, async () => {
      expect(await runConsumer(runtime)).toEqual({
        runtime,
        sent: { offset: 1, duplicate: false },
        received: { from: "alice", id: true },
        resumed: true,
        rejoined: { recovered: true },
        aliceMessages: ["while alice was away", "back"],
        renewed: true,
        refused: { code: "not_in_room", temporary: false },
        closed: { state: "closed", code: 1000 },
      });
    });
  }
});

function nodeMajor(): number {
  const version = Bun.spawnSync(["node", "--version"]).stdout.toString().trim();
  return Number(/^v(\d+)/.exec(version)?.[1] ?? 0);
}
