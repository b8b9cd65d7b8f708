// scripts/blue-green-deploy.sh checks what a command needs before it changes anything: a runtime
// that cannot work stops it with one line naming what is missing, and the state directory, the
// Traefik file and the Prometheus targets file stay as they were. Deploy state is never tracked:
// the targets file is generated on first use and ignored by git.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { DeploySetup, REPO } from "./harness";

let s: DeploySetup;
beforeAll(async () => {
  s = await DeploySetup.create();
  // A fresh state directory: the checks must not even create it.
  rmSync(s.stateDir, { recursive: true, force: true });
});
afterAll(async () => {
  await s.stop();
});

const before = () => ({ active: s.activeFile(), state: existsSync(s.stateDir), targets: existsSync(s.targetsFile) });

/** PATH without the directories that hold a docker binary. */
const pathWithoutDocker = () =>
  (process.env.PATH ?? "")
    .split(":")
    .filter((dir) => dir && !existsSync(join(dir, "docker")))
    .join(":");

/**
 * A stand-in for the docker CLI (a test double): the engine answers, but Compose v2 is not
 * installed, as on a host with the engine and only the old docker-compose.
 */
function dockerWithoutCompose(): string {
  const bin = join(s.dir, "docker-double-bin");
  mkdirSync(bin, { recursive: true });
  writeFileSync(
    join(bin, "docker"),
    [
      "#!/usr/bin/env bash",
      'case "$1" in',
      "  info) echo 28.2.2 ;;",
      "  compose) echo \"docker: 'compose' is not a docker command.\" >&2; exit 1 ;;",
      '  *) echo "docker double: unexpected $*" >&2; exit 1 ;;',
      "esac",
      "",
    ].join("\n"),
  );
  chmodSync(join(bin, "docker"), 0o755);
  return `${bin}:${pathWithoutDocker()}`;
}

const lastLine = (text: string) => text.trim().split("\n").at(-1) ?? "";

describe("runtime prerequisites, checked before anything changes", () => {
  test("compose without docker on PATH", async () => {
    const was = before();
    const run = await s.run(["deploy"], { DEPLOY_RUNTIME: "compose", PATH: pathWithoutDocker() });
    expect(run.code).toBe(1);
    expect(run.stderr).toBe("error: docker is required for DEPLOY_RUNTIME=compose (not found on PATH)\n");
    expect(before()).toEqual(was);
  });

  test("compose with a Docker engine that cannot be reached (the real docker CLI, no engine here)", async () => {
    const docker = Bun.which("docker");
    if (!docker) {
      console.log("note: no docker CLI on PATH; the unreachable-engine case is covered by the double below only");
      return;
    }
    const was = before();
    const run = await s.run(["deploy"], { DEPLOY_RUNTIME: "compose" });
    expect(run.code).toBe(1);
    expect(run.stderr.split("\n").length).toBe(2);
    expect(run.stderr).toStartWith("error: the Docker engine is not reachable for DEPLOY_RUNTIME=compose: ");
    expect(before()).toEqual(was);
  });

  test("compose with an engine but without Compose v2", async () => {
    const was = before();
    const run = await s.run(["deploy"], { DEPLOY_RUNTIME: "compose", PATH: dockerWithoutCompose() });
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      "error: Docker Compose v2 is required for DEPLOY_RUNTIME=compose ('docker compose version' failed)\n",
    );
    expect(before()).toEqual(was);
  });

  test("local without the binary", async () => {
    const was = before();
    const missing = join(s.dir, "no-such-binary");
    const run = await s.run(["deploy"], { DEPLOY_BINARY: missing });
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`error: no binary at ${missing} (build it: cd app && bun run build)\n`);
    expect(run.stdout).toBe("");
    expect(before()).toEqual(was);
  });

  test("local without k6 and without go to build it", async () => {
    const was = before();
    const bin = join(s.dir, "empty-tools");
    mkdirSync(bin, { recursive: true });
    const path = (process.env.PATH ?? "")
      .split(":")
      .filter((dir) => dir && !existsSync(join(dir, "k6")) && !existsSync(join(dir, "go")))
      .join(":");
    // k6_bin also looks in <repo>/.tools/bin: a copy of the script in a repository without it.
    const run = await s.run(["deploy"], { PATH: path, K6_VERSION: "v0.0.0-none" });
    expect(run.code).toBe(1);
    expect(lastLine(run.stderr)).toMatch(
      /^error: k6 v0\.0\.0-none is required for the smoke test: not on PATH nor in /,
    );
    expect(before()).toEqual(was);
  });
});

describe("deploy state is untracked", () => {
  test("the Prometheus targets file is ignored by git and not in the repository", async () => {
    const path = "monitoring/prometheus/targets/websocket.yml";
    const ignored = Bun.spawnSync(["git", "check-ignore", "-q", path], { cwd: REPO });
    expect(ignored.exitCode).toBe(0);
    const tracked = Bun.spawnSync(["git", "ls-files", "--error-unmatch", path], { cwd: REPO, stderr: "pipe" });
    expect(tracked.exitCode).not.toBe(0);
  });

  test("generated on first use, listing both colors; rewritten by deploys after that", async () => {
    expect(existsSync(s.targetsFile)).toBe(false);
    const run = await s.run(["status"]);
    expect(run.code).toBe(0);
    const groups = parse(readFileSync(s.targetsFile, "utf8")) as { labels: { color: string } }[];
    expect(groups.map((g) => g.labels.color)).toEqual(["blue", "green"]);
    // An existing file is the deploys' to keep: status leaves it alone.
    writeFileSync(s.targetsFile, "- targets: []\n");
    expect((await s.run(["status"])).code).toBe(0);
    expect(readFileSync(s.targetsFile, "utf8")).toBe("- targets: []\n");
  });
});
