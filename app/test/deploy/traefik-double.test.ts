// The Traefik double does what the deploy tests rely on: it follows active-color.yml through atomic
// renames, keeps a broken configuration from taking effect, and leaves open WebSockets where they are.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { cpSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server } from "bun";
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

/** Replaces active-color.yml the way the deploy script does: a temporary file, then a rename. */
function activate(text: string) {
  const tmp = join(dynamicDir, ".active-color.tmp");
  writeFileSync(tmp, text);
  renameSync(tmp, join(dynamicDir, "active-color.yml"));
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

test("follows renames of active-color.yml, keeps open sockets on their backend, ignores a broken file", async () => {
  expect(await frontColor()).toBe("blue");
  const http = (await (await fetch(`${front.url}/health?x=1`)).json()) as { path: string; forwardedFor: string };
  expect(http).toMatchObject({ path: "/health", forwardedFor: "127.0.0.1" });
  const onBlue = await open(`${front.wsUrl}/ws/chat/one`);
  expect(await onBlue.ask("hi")).toBe("blue:hi");

  activate(naming("green"));
  await waitFor(() => front.active() === "websocket-green", { what: "the reload" });
  expect(await frontColor()).toBe("green");
  expect(await onBlue.ask("still")).toBe("blue:still");
  const onGreen = await open(`${front.wsUrl}/ws/chat/two`);
  expect(await onGreen.ask("hi")).toBe("green:hi");
  expect(front.openSockets()).toEqual({ "websocket-blue": 1, "websocket-green": 1 });
  const api = await (await fetch(`${front.apiUrl}/http/services/chat-active@file`)).json();
  expect(api).toMatchObject({ weighted: { services: [{ name: "websocket-green", weight: 1 }] }, provider: "file" });

  const { applied } = front.reloads();
  activate("http:\n  services:\n    chat-active: [unclosed\n");
  await waitFor(() => front.reloads().ignored > 0, { what: "the broken file to be read" });
  expect(front.reloads().applied).toBe(applied);
  expect(await frontColor()).toBe("green");

  // The close code of the backend reaches the client: a drain's 1012 stays a 1012.
  onBlue.ws.send("bye");
  expect(await onBlue.closed).toBe(1012);
  onGreen.ws.close();
});
