// /health describes the instance; /health/ready says whether it takes new connections.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../helpers/server";
import { waitFor } from "../helpers/wait";

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer({ COLOR: "green", INSTANCE_ID: "health-1", APP_VERSION: "1.2.3", MAX_CONNECTIONS: "50" });
});
afterAll(() => srv.stop());

test("/health answers 200 JSON with the instance and its connection count", async () => {
  const res = await fetch(`${srv.httpUrl}/health`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("application/json");
  const body = await res.json();
  expect(body).toMatchObject({
    status: "ok",
    instanceId: "health-1",
    color: "green",
    version: "1.2.3",
    connections: 0,
    maxConnections: 50,
  });
  expect(Number.isInteger(body.uptimeSeconds)).toBe(true);
  expect(body.uptimeSeconds).toBeGreaterThanOrEqual(0);

  const client = await srv.connect();
  expect((await (await fetch(`${srv.httpUrl}/health`)).json()).connections).toBe(1);
  await client.close();
  await waitFor(async () => (await (await fetch(`${srv.httpUrl}/health`)).json()).connections === 0, {
    what: "/health to count 0",
  });
});

test("/health/ready answers 200 while accepting connections", async () => {
  const res = await fetch(`${srv.httpUrl}/health/ready`);
  expect(res.status).toBe(200);
  expect(await res.json()).toMatchObject({ ready: true, color: "green", instanceId: "health-1" });
});
