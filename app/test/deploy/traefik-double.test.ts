// The Traefik double does what the deploy tests rely on, as Traefik v3 does: it follows
// active-color.yml through atomic renames, keeps a file that does not parse from taking effect,
// applies an empty or router-less file as it is (404), throttles reloads, rate-limits per source as
// traefik/dynamic/middlewares.yml says, and leaves open WebSockets where they are.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { cpSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server } from "bun";
import { parse } from "yaml";
import { waitFor } from "../helpers/wait";
import { REPO } from "./harness";
import { startTraefikDouble, type TraefikDouble } from "./traefik-double";

const dir = mkdtempSync(join(tmpdir(), "traefik-double-"));
const dynamicDir = join(dir, "dynamic");
let backends: Server<{ color: string }>[] = [];
let front: TraefikDouble;

/** A backend that says its color over HTTP, and over WebSocket on every frame, then closes with 1012 on "bye". */
function backend(color: string): Server<{ color: string }> {
  return Bun.serve<{ color: string }>({
    port: 0,
    hostname: "127.0.0.1",
    fetch(req, server) {
      if (server.upgrade(req, { data: { color } })) return undefined;
      return Response.json({
        color,
        path: new URL(req.url).pathname,
        forwardedFor: req.headers.get("x-forwarded-for"),
      });
    },
    websocket: {
      message(ws, message) {
        if (message === "bye") ws.close(1012, "server shutting down");
        else ws.send(`${ws.data.color}:${message}`);
      },
    },
  });
}

/** Replaces active-color.yml the way the deploy script does: a temporary file beside the watched directory, then a rename. */
function activate(text: string) {
  const tmp = join(dir, ".active-color.tmp");
  writeFileSync(tmp, text);
  renameSync(tmp, join(dynamicDir, "active-color.yml"));
}
/** What the front door answers on /health: the backend's color, or the status when no backend answered. */
async function frontAnswer(): Promise<string | number> {
  const res = await fetch(`${front.url}/health`);
  return res.ok ? ((await res.json()) as { color: string }).color : res.status;
}
const naming = (color: string) =>
  `http:\n  services:\n    chat-active:\n      weighted:\n        services:\n          - name: websocket-${color}\n            weight: 1\n`;

async function open(url: string) {
  const ws = new WebSocket(url);
  const inbox: string[] = [];
  ws.onmessage = (e) => inbox.push(String(e.data));
  const closed = new Promise<number>((resolve) => (ws.onclose = (e) => resolve(e.code)));
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  const ask = async (text: string) => {
    ws.send(text);
    await waitFor(() => inbox.length > 0, { what: `an answer to ${text}` });
    return inbox.shift();
  };
  return { ws, ask, closed };
}

beforeAll(() => {
  cpSync(join(REPO, "traefik", "dynamic"), dynamicDir, { recursive: true });
  backends = [backend("blue"), backend("green")];
  front = startTraefikDouble(dynamicDir, {
    "websocket-blue": `http://127.0.0.1:${backends[0]!.port}`,
    "websocket-green": `http://127.0.0.1:${backends[1]!.port}`,
  });
});

afterAll(async () => {
  await front.stop();
  for (const b of backends) b.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

const frontColor = async () => ((await (await fetch(`${front.url}/health`)).json()) as { color: string }).color;

// Each test leaves blue active and waits out the reload throttle, so the next starts from rest.
async function settle() {
  activate(naming("blue"));
  await waitFor(() => front.active() === "websocket-blue", { timeoutMs: 5000, what: "blue again" });
  await Bun.sleep(2100);
}

test("follows renames of active-color.yml, keeps open sockets on their backend, ignores a broken file", async () => {
  expect(await frontColor()).toBe("blue");
  const http = (await (await fetch(`${front.url}/health?x=1`)).json()) as { path: string; forwardedFor: string };
  expect(http).toMatchObject({ path: "/health", forwardedFor: "127.0.0.1" });
  const onBlue = await open(`${front.wsUrl}/ws/chat/one`);
  expect(await onBlue.ask("hi")).toBe("blue:hi");

  activate(naming("green"));
  await waitFor(() => front.active() === "websocket-green", { timeoutMs: 500, what: "the reload" });
  expect(await frontColor()).toBe("green");
  expect(await onBlue.ask("still")).toBe("blue:still");
  const onGreen = await open(`${front.wsUrl}/ws/chat/two`);
  expect(await onGreen.ask("hi")).toBe("green:hi");
  expect(front.openSockets()).toEqual({ "websocket-blue": 1, "websocket-green": 1 });
  const api = await (await fetch(`${front.apiUrl}/http/services/chat-active@file`)).json();
  expect(api).toMatchObject({ weighted: { services: [{ name: "websocket-green", weight: 1 }] }, provider: "file" });

  const { applied } = front.reloads();
  activate("http:\n  services:\n    chat-active: [unclosed\n");
  await waitFor(() => front.reloads().ignored > 0, { timeoutMs: 5000, what: "the broken file to be read" });
  expect(front.reloads().applied).toBe(applied);
  expect(await frontColor()).toBe("green");

  // The close code of the backend reaches the client: a drain's 1012 stays a 1012.
  onBlue.ws.send("bye");
  expect(await onBlue.closed).toBe(1012);
  onGreen.ws.close();
});

test("an empty active-color.yml is applied as it is: every router loses chat-active, the front door answers 404", async () => {
  await settle();
  activate("");
  await waitFor(async () => (await frontAnswer()) === 404, { timeoutMs: 5000, what: "the 404" });
  expect(await (await fetch(`${front.url}/health`)).text()).toBe("404 page not found\n");
  const routers = (await (await fetch(`${front.apiUrl}/http/routers`)).json()) as {
    name: string;
    status: string;
    error?: string[];
  }[];
  expect(routers.find((r) => r.name === "chat-ws@file")).toMatchObject({
    status: "disabled",
    error: ['the service "chat-active@file" does not exist'],
  });
  const refused = await new Promise<boolean>((resolve) => {
    const ws = new WebSocket(`${front.wsUrl}/ws/chat/empty-file`);
    ws.onopen = () => resolve(false);
    ws.onerror = () => resolve(true);
  });
  expect(refused).toBe(true);
  expect(front.upgrades()[404]).toBeGreaterThan(0);
  await settle();
  expect(await frontAnswer()).toBe("blue");
}, 20_000);

test("a directory without routers is applied as it is: 404", async () => {
  await settle();
  const routers = readFileSync(join(dynamicDir, "routers.yml"), "utf8");
  writeFileSync(join(dir, "routers.tmp"), "# no routers\n");
  renameSync(join(dir, "routers.tmp"), join(dynamicDir, "routers.yml"));
  await waitFor(async () => (await frontAnswer()) === 404, { timeoutMs: 5000, what: "the 404" });
  writeFileSync(join(dir, "routers.tmp"), routers);
  renameSync(join(dir, "routers.tmp"), join(dynamicDir, "routers.yml"));
  await waitFor(async () => (await frontAnswer()) === "blue", { timeoutMs: 5000, what: "the routers back" });
}, 20_000);

test("reload throttle: a change right after a reload waits for the end of providersThrottleDuration (2 s)", async () => {
  await settle();
  // A temporary file created in the watched directory is a change too: it starts the throttle.
  const before = front.reloads().applied;
  writeFileSync(join(dynamicDir, ".active-color.tmp"), naming("green"));
  await waitFor(() => front.reloads().applied > before, { what: "the read the temporary file caused" });
  const firstRead = performance.now();
  renameSync(join(dynamicDir, ".active-color.tmp"), join(dynamicDir, "active-color.yml"));
  await waitFor(() => front.active() === "websocket-green", { timeoutMs: 5000, what: "green" });
  expect(performance.now() - firstRead).toBeGreaterThanOrEqual(1900);

  // After a quiet spell, a rename from outside the directory is picked up at once.
  await Bun.sleep(2100);
  const again = performance.now();
  activate(naming("blue"));
  await waitFor(() => front.active() === "websocket-blue", { timeoutMs: 5000, what: "blue" });
  expect(performance.now() - again).toBeLessThan(500);
}, 20_000);

test("ws-ratelimit from middlewares.yml: the burst passes, the rest is refused with 429 and Retry-After", async () => {
  await settle();
  const { rateLimit } = (parse(readFileSync(join(dynamicDir, "middlewares.yml"), "utf8")) as any).http.middlewares[
    "ws-ratelimit"
  ];
  const attempts = rateLimit.burst + 20;
  const answers = await Promise.all(
    Array.from({ length: attempts }, () =>
      fetch(`${front.url}/ws/chat/limited`, { headers: { upgrade: "websocket" } }).then(async (r) => ({
        status: r.status,
        retryAfter: r.headers.get("retry-after"),
      })),
    ),
  );
  const refused = answers.filter((a) => a.status === 429);
  // Sent at once from one address: the burst gets through (the backend answers the non-upgrade),
  // plus what refills while they are held within maxDelay; the rest is refused.
  expect(refused.length).toBeGreaterThanOrEqual(attempts - rateLimit.burst - 2);
  expect(refused.length).toBeLessThanOrEqual(attempts - rateLimit.burst);
  expect(refused.every((a) => Number(a.retryAfter) >= 1)).toBe(true);
  // The HTTP routers have their own limiter: the page still loads.
  expect(await frontAnswer()).toBe("blue");
}, 20_000);
