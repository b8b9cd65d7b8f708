// The compiled binary, run from an empty folder: health, the embedded test page, a chat round trip.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json";
import { type RunningBinary, startBinary } from "../helpers/binary";
import { TestClient } from "../helpers/client";
import { connId } from "../helpers/server";

let server: RunningBinary;
let cwd: string;
beforeAll(async () => {
  cwd = mkdtempSync(join(tmpdir(), "binary-e2e-"));
  server = await startBinary({ COLOR: "green", INSTANCE_ID: "e2e-1" }, { cwd });
});
afterAll(async () => {
  await server?.stop("SIGTERM");
  rmSync(cwd, { recursive: true, force: true });
});

test("/health answers with the instance and the version built in", async () => {
  const res = await fetch(`${server.httpUrl}/health`);
  expect(res.status).toBe(200);
  expect(await res.json()).toMatchObject({
    status: "ok",
    instanceId: "e2e-1",
    color: "green",
    version: pkg.version,
    connections: 0,
  });
  expect((await fetch(`${server.httpUrl}/health/ready`)).status).toBe(200);
});

test("the test page is served from inside the binary, with no public/ folder beside it", async () => {
  expect(readdirSync(cwd)).toEqual([]);
  const res = await fetch(`${server.httpUrl}/`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/html");
  expect(await res.text()).toBe(readFileSync(join(import.meta.dir, "..", "..", "public", "index.html"), "utf8"));
});

test("a chat round trip between two clients", async () => {
  const url = (id: string, user: string) => `ws://127.0.0.1:${server.port}/ws/chat/${id}?user=${user}`;
  const alice = await TestClient.connect(url(connId(), "alice"));
  const bob = await TestClient.connect(url(connId(), "bob"));
  try {
    expect(await alice.request({ type: "join", room: "lobby" })).toMatchObject({
      ok: true,
      for: "join",
      recovered: false,
    });
    expect(await bob.request({ type: "join", room: "lobby" })).toMatchObject({ ok: true, for: "join" });
    const sent = await alice.request({
      type: "message",
      room: "lobby",
      text: "hello from the binary",
      clientMsgId: "e2e-1",
    });
    expect(sent).toMatchObject({ ok: true, for: "message", offset: 1 });
    expect(await bob.next("message")).toMatchObject({
      room: "lobby",
      from: "alice",
      text: "hello from the binary",
      offset: 1,
      id: sent.id,
    });
    const reply = await bob.request({ type: "direct", to: "alice", text: "hi alice", clientMsgId: "e2e-2" });
    expect(await alice.next("direct")).toMatchObject({ from: "bob", to: "alice", text: "hi alice", id: reply.id });
  } finally {
    await Promise.all([alice.close(), bob.close()]);
  }
});
