// scripts/blue-green-deploy.sh with DEPLOY_RUNTIME=local: the real script, the compiled binary as
// both colors, a real Redis and real k6, behind the Traefik double. Each test gets its own ports,
// state directory, copy of traefik/dynamic and Redis key prefix.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { TestClient } from "../helpers/client";
import { startRedis, type TestRedis } from "../helpers/redis";
import { waitFor } from "../helpers/wait";
import { DeploySetup, REPO, type ScriptRun } from "./harness";

let redis: TestRedis;
let setup: DeploySetup | undefined;

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis.stop();
});
afterEach(async () => {
  await setup?.stop({ keepRedis: true });
  setup = undefined;
});

async function blueServing() {
  setup = await DeploySetup.create(redis);
  await setup.startColor("blue");
  expect(await setup.frontColor()).toBe("blue");
  return setup;
}

const lastLine = (text: string) => text.trim().split("\n").at(-1) ?? "";
/** A run that must succeed; when it did not, the failure shows what the script printed. */
const expectOk = (run: ScriptRun) => expect(run.code, `${run.stdout}${run.stderr}`).toBe(0);

describe("deploy", () => {
  test("blue to green: switch, verify, gate, drain; blue stopped, history records it", async () => {
    const s = await blueServing();
    const run = await s.run(["deploy"]);
    expectOk(run);
    expect(run.stderr).toBe("");
    // Every step says what it does and how long it took, in this order.
    const steps = [...run.stdout.matchAll(/^<== (.+) \(\d+s\)$/gm)].map((m) => m[1]);
    expect(steps).toEqual([
      "take the deploy lock",
      "start green",
      "Prometheus: scrape blue and green",
      "wait for green /health/ready",
      "smoke test against green (k6, 3 VUs, 3s)",
      "switch Traefik to green",
      "verify the front door reaches green",
      "post-switch gate on green (3s)",
      "drain blue",
      "Prometheus: scrape green only",
      "hand-over: blue's clients on green",
    ]);
    expect(run.stdout).toMatch(
      /^ {4}hand-over: 0 of 0 connections moved to green in \d+\.\ds; upgrades refused: 0 by green \(per-IP limit\), 0 by the front door$/m,
    );
    expect(run.stdout).toContain("Traefik API: chat-active -> websocket-green");
    expect(s.activeFile()).toContain("- name: websocket-green");
    expect(s.front.active()).toBe("websocket-green");
    expect(await s.frontColor()).toBe("green");
    expect(s.running("blue")).toBe(false);
    expect(s.running("green")).toBe(true);
    // Prometheus is told to scrape green alone: ServerDown stays quiet about the stopped blue.
    expect(s.scraped()).toEqual(s.expectedScrape("green"));
    const [entry] = s.history();
    expect(entry!.split("\t").slice(1, 7)).toEqual([
      "deploy-test",
      "deploy",
      "blue",
      "green",
      expect.any(String),
      "ok",
    ]);
  }, 90_000);

  test("green never ready: no switch, green stopped, blue keeps serving", async () => {
    const s = await blueServing();
    // A new version that cannot reach a required Redis stays unready (503 redis_down).
    s.colorEnv("green", { REDIS_REQUIRED: "true", REDIS_URL: "redis://127.0.0.1:1" });
    const client = await TestClient.connect(`${s.front.wsUrl}/ws/chat/unready-1?user=u1`);
    const run = await s.run(["deploy", "green"], { READY_TIMEOUT: "3" });
    expect(run.code).toBe(1);
    expect(lastLine(run.stderr)).toBe("deploy failed: green was not ready within 3s; traffic stays on blue");
    expect(s.activeFile()).toContain("- name: websocket-blue");
    expect(await s.frontColor()).toBe("blue");
    expect(s.running("green")).toBe(false);
    expect(s.scraped()).toEqual(s.expectedScrape("blue"));
    // The client on blue never noticed.
    await client.sync();
    expect(client.all("goodbye")).toEqual([]);
    expect(s.history()[0]!.split("\t")[6]).toBe("failed");
    client.close();
  }, 60_000);

  test("green exits at start: the wait ends at once with its last log lines, no switch", async () => {
    const s = await blueServing();
    s.colorEnv("green", { MAX_CONNECTIONS: "lots" });
    const run = await s.run(["deploy"], { READY_TIMEOUT: "30" });
    expect(run.code).toBe(1);
    expect(lastLine(run.stderr)).toBe("deploy failed: green exited before it was ready; traffic stays on blue");
    expect(run.stdout).toContain('config error: invalid MAX_CONNECTIONS="lots"');
    expect(run.ms).toBeLessThan(15_000);
    expect(await s.frontColor()).toBe("blue");
  }, 60_000);

  test("smoke test fails: no switch, green stopped", async () => {
    const s = await blueServing();
    // Ready, but refuses every message the smoke test sends (text_too_long): k6 thresholds fail.
    s.colorEnv("green", { MAX_TEXT_LENGTH: "5" });
    const run = await s.run(["deploy"]);
    expect(run.code).toBe(1);
    expect(lastLine(run.stderr)).toBe("deploy failed: smoke test against green failed; traffic stays on blue");
    expect(run.stdout).not.toContain("switch Traefik");
    expect(s.activeFile()).toContain("- name: websocket-blue");
    expect(s.front.reloads().applied).toBe(0);
    expect(s.running("green")).toBe(false);
    expect(s.running("blue")).toBe(true);
    expect(s.scraped()).toEqual(s.expectedScrape("blue"));
  }, 60_000);

  test("the switch cannot write its file (a full disk): the step fails, Traefik never gets an empty file, rollback", async () => {
    const s = await blueServing();
    // The state directory cannot take the rendered active-color.next.yml: writing it fails as on a
    // full disk. A directory of that name makes every write and copy of it fail.
    mkdirSync(join(s.stateDir, "active-color.next.yml"));
    const onBlue = await TestClient.connect(`${s.front.wsUrl}/ws/chat/full-disk-1?user=ub`);
    const statuses = new Map<number, number>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const status = await fetch(`${s.front.url}/health`).then(
          (r) => r.status,
          () => 0,
        );
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        await Bun.sleep(250);
      }
    })();
    const run = await s.run(["deploy"]);
    // The reload throttle could hold a change back: keep watching past it.
    await Bun.sleep(2500);
    watching = false;
    await watcher;
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^<== switch Traefik to green \(\d+s\), failed with 1$/m);
    expect(lastLine(run.stderr)).toBe(
      `deploy failed: could not replace ${s.dynamicDir}/active-color.yml; rolled back to blue`,
    );
    // The front door never lost its route: every answer was blue's 200.
    expect(Object.fromEntries(statuses)).toEqual({ 200: expect.any(Number) });
    expect(s.activeFile()).toBe(readFileSync(join(REPO, "traefik", "dynamic", "active-color.yml"), "utf8"));
    expect(await s.frontColor()).toBe("blue");
    expect(s.running("blue")).toBe(true);
    expect(s.running("green")).toBe(false);
    await onBlue.sync();
    expect(onBlue.all("goodbye")).toEqual([]);
    expect(s.history()[0]!.split("\t")[6]).toBe("rolled-back");
    expect(readdirSync(s.dir).filter((f) => f.startsWith(".active-color."))).toEqual([]);
    onBlue.close();
  }, 90_000);

  test("post-switch gate fails: automatic rollback to blue, blue's clients never left", async () => {
    const s = await blueServing();
    const onBlue = await TestClient.connect(`${s.front.wsUrl}/ws/chat/gate-blue-1?user=ub`);
    const deploy = s.start(["deploy"], { GATE_SECONDS: "8", GATE_MAX_ERROR_RATIO: "0.2", GATE_MIN_FRAMES: "10" });
    // Once new connections reach green, a client there makes most of green's frames fail.
    await waitFor(() => deploy.output().includes("<== verify the front door reaches green"), {
      timeoutMs: 40_000,
      what: "the switch",
    });
    const onGreen = await TestClient.connect(`${s.front.wsUrl}/ws/chat/gate-green-1?user=ug`, {
      waitEstablished: false,
    });
    expect((await onGreen.next("connection_established")).color).toBe("green");
    let sent = 0;
    const misbehave = setInterval(() => {
      if (onGreen.ws.readyState === WebSocket.OPEN)
        onGreen.send({ type: "message", room: "never-joined", text: "x", clientMsgId: `bad-${sent++}` });
    }, 50);
    const run = await deploy.done;
    clearInterval(misbehave);
    expect(run.code).toBe(1);
    expect(lastLine(run.stderr)).toMatch(
      /^deploy failed: error rate on green \d+\/\d+ frames is above GATE_MAX_ERROR_RATIO=0\.2; rolled back to blue$/,
    );
    expect(s.activeFile()).toContain("- name: websocket-blue");
    expect(await s.frontColor()).toBe("blue");
    expect(s.running("blue")).toBe(true);
    expect(s.running("green")).toBe(false);
    expect(s.scraped()).toEqual(s.expectedScrape("blue"));
    // The client on green was drained back; the one on blue kept its socket.
    expect((await onGreen.next("goodbye")).reconnect).toBe(true);
    await onBlue.sync();
    expect(onBlue.all("goodbye")).toEqual([]);
    expect(s.history()[0]!.split("\t")[6]).toBe("rolled-back");
    onBlue.close();
  }, 90_000);

  test("interrupted during the drain: traffic stays on green, and only green is scraped", async () => {
    const s = await blueServing();
    // A client on blue keeps the drain going until DRAIN_TIMEOUT, so the signal lands inside it.
    const onBlue = await TestClient.connect(`${s.front.wsUrl}/ws/chat/drain-int-1?user=ub`);
    const deploy = s.start(["deploy"], { DRAIN_TIMEOUT: "8000" });
    await waitFor(() => deploy.output().includes("==> drain blue"), { timeoutMs: 60_000, what: "the drain step" });
    deploy.signal("SIGINT");
    const run = await deploy.done;
    expect(run.code).toBe(1);
    expect(lastLine(run.stderr)).toBe(
      "deploy failed: interrupted by SIGINT; traffic is on green, blue may still be draining",
    );
    expect(await s.frontColor()).toBe("green");
    expect(s.scraped()).toEqual(s.expectedScrape("green"));
    onBlue.close();
  }, 90_000);

  test("a second deploy while one runs is refused with a clear message", async () => {
    const s = await blueServing();
    const first = s.start(["deploy"]);
    await waitFor(() => first.output().includes("<== take the deploy lock"), {
      timeoutMs: 10_000,
      what: "the first deploy's lock",
    });
    const second = await s.run(["deploy"]);
    expect(second.code).toBe(1);
    expect(lastLine(second.stderr)).toMatch(
      /^error: another deploy is running \(pid \d+, deploy by deploy-test since .+\); wait for it/,
    );
    const status = await s.run(["status"]);
    expect(status.stdout).toMatch(/deploy in progress: pid \d+, deploy by deploy-test/);
    expectOk(await first.done);
    // The refusal did not end up in the audit log; the deploy did.
    expect(s.history().length).toBe(1);
  }, 90_000);
});

describe("rollback, status, history", () => {
  test("after a deploy: status, rollback to blue with the binary it ran, history of both", async () => {
    const s = await blueServing();
    expectOk(await s.run(["deploy"]));

    const status = await s.run(["status"]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/^active color: green /m);
    expect(status.stdout).toMatch(/^front door: +green /m);
    expect(status.stdout).toMatch(/^green +yes +yes +yes +ok +\S+ +0 +websocket-green$/m);
    expect(status.stdout).toMatch(/^blue +no +no +- +- +- +- +-$/m);
    expect(status.stdout).toMatch(
      /^last deploys:\nTIME +USER +ACTION +FROM +TO +VERSION +RESULT +DURATION +REASON\n\S+ +deploy-test +deploy +blue +green +\S+ +ok +\d+s +-$/m,
    );

    const rollback = await s.run(["rollback"]);
    expectOk(rollback);
    expect(rollback.stdout).toContain("<== start blue with the version it last ran");
    expect(rollback.stdout).not.toContain("smoke test");
    expect(rollback.stdout).toContain("<== Prometheus: scrape green and blue");
    expect(await s.frontColor()).toBe("blue");
    expect(s.running("blue")).toBe(true);
    expect(s.running("green")).toBe(false);
    expect(s.scraped()).toEqual(s.expectedScrape("blue"));

    const history = await s.run(["history"]);
    expect(history.code).toBe(0);
    const lines = history.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^TIME +USER +ACTION +FROM +TO +VERSION +RESULT +DURATION +REASON$/);
    expect(lines.slice(1).map((l) => l.split(/ +/).slice(2, 5).concat(l.split(/ +/)[6]!))).toEqual([
      ["deploy", "blue", "green", "ok"],
      ["rollback", "green", "blue", "ok"],
    ]);
  }, 120_000);

  test("--dry-run prints the commands and changes nothing; usage errors exit 2", async () => {
    const s = await blueServing();
    const dry = await s.run(["--dry-run", "deploy"]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain("[dry-run] kill -TERM");
    expect(dry.stdout).toMatch(
      /\[dry-run\] spawn \S+green\/server\.pid \S+ env -i REDIS_URL=redis:\/\/127\.0\.0\.1:\d+ /,
    );
    expect(dry.stdout).toMatch(
      /\[dry-run\] replace_active_file \S+\/active-color\.next\.yml green\n +chat-active -> websocket-green\n/,
    );
    expect(dry.stdout).toContain(`[dry-run] ${s.targetsFile} <- green\n`);
    expect(s.scraped()).toBeUndefined();
    expect(s.activeFile()).toContain("- name: websocket-blue");
    expect(s.running("green")).toBe(false);
    expect(s.history()).toEqual([]);

    const help = await s.run(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toStartWith("Usage: scripts/blue-green-deploy.sh");
    for (const args of [[], ["deploy", "purple"], ["launch"], ["--force"], ["status", "extra"]]) {
      const bad = await s.run(args);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toStartWith("error: ");
    }
    expect((await s.run(["status"], { GATE_SECONDS: "soon" })).code).toBe(2);
    const same = await s.run(["deploy", "blue"]);
    expect(same.code).toBe(1);
    expect(lastLine(same.stderr)).toBe("error: blue is the active color already; deploy to green instead");
  }, 60_000);
});
