// Refusals before any upgrade: 400 JSON for a bad connectionId or user, 404 JSON for unknown routes.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rawUpgrade } from "../helpers/http";
import { sample, scrape } from "../helpers/metrics";
import { connId, startTestServer, type TestServer } from "../helpers/server";

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer();
});
afterAll(() => srv.stop());

test("a connectionId that is not 8-64 characters of [A-Za-z0-9_-] gets 400 JSON, not an upgrade", async () => {
  for (const id of ["short", "x".repeat(65), "has.dots.in.it", "with%20space", "sp%C3%A9cial-id", "semi;colon1"]) {
    const res = await rawUpgrade(srv.port, `/ws/chat/${id}`);
    expect(res.status, id).toBe(400);
    expect(res.headers["content-type"]).toContain("application/json");
    expect(JSON.parse(res.body)).toMatchObject({ error: "invalid_connection_id" });
  }
  expect(
    sample(await scrape(srv.httpUrl), "websocket_upgrades_rejected_total", { reason: "invalid_connection_id" }),
  ).toBe(6);
});

test("the bounds of a valid connectionId upgrade", async () => {
  for (const id of ["a".repeat(8), `${"A-z_9".repeat(12)}abcd`]) {
    expect((await rawUpgrade(srv.port, `/ws/chat/${id}`)).status).toBe(101);
  }
});

test("a user parameter longer than 64 characters gets 400 JSON", async () => {
  const res = await rawUpgrade(srv.port, `/ws/chat/${connId()}?user=${"u".repeat(65)}`);
  expect(res.status).toBe(400);
  expect(JSON.parse(res.body)).toMatchObject({ error: "invalid_user" });
  expect((await rawUpgrade(srv.port, `/ws/chat/${connId()}?user=${"u".repeat(64)}`)).status).toBe(101);
});

test("an unknown route gets 404 JSON", async () => {
  for (const path of ["/nope", "/health/nope", "/ws/chat"]) {
    const res = await fetch(`${srv.httpUrl}${path}`);
    expect(res.status, path).toBe(404);
    expect(res.headers.get("content-type")).toContain("application/json");
    expect(await res.json()).toMatchObject({ error: "not_found" });
  }
});

test("the test page is served at /", async () => {
  const res = await fetch(`${srv.httpUrl}/`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/html");
  expect(await res.text()).toContain("<html");
});
