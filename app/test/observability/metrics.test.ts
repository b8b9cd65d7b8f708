// The counters move as the traffic a client produces: connections, frames by direction and type,
// error frames by code, disconnects by close code, latency of messages, what the history holds.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { sample, scrape } from "../helpers/metrics";
import { connId, startTestServer, type TestServer } from "../helpers/server";
import { waitFor } from "../helpers/wait";

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer({ MAX_CONNECTIONS: "77" });
});
afterAll(() => srv.stop());

test("every counter follows what the clients did", async () => {
  const m0 = await scrape(srv.httpUrl);
  expect(sample(m0, "websocket_connections_total")).toBe(0);
  expect(sample(m0, "websocket_max_connections")).toBe(77);

  const alice = await srv.connect(connId(), "user=m-alice");
  const bob = await srv.connect(connId(), "user=m-bob");
  const m1 = await scrape(srv.httpUrl);
  expect(sample(m1, "websocket_connections_total")).toBe(2);

  await alice.request({ type: "join", room: "metrics" });
  await bob.request({ type: "join", room: "metrics" });
  for (let i = 0; i < 3; i++)
    await alice.request({ type: "message", room: "metrics", text: `m${i}`, clientMsgId: `m-${i}` });
  for (let i = 0; i < 3; i++) await bob.next("message");
  alice.send("{broken");
  await alice.next("error");
  alice.send({ type: "nope" });
  await alice.next("error");
  await alice.request({ type: "history", room: "elsewhere" });

  const m2 = await scrape(srv.httpUrl);
  const delta = (name: string, labels: Record<string, string>) => sample(m2, name, labels) - sample(m1, name, labels);
  expect(delta("websocket_messages_total", { direction: "in", type: "join" })).toBe(2);
  expect(delta("websocket_messages_total", { direction: "in", type: "message" })).toBe(3);
  expect(delta("websocket_messages_total", { direction: "in", type: "history" })).toBe(1);
  expect(delta("websocket_messages_total", { direction: "in", type: "invalid" })).toBe(2);
  // Each room message went out to both members.
  expect(delta("websocket_messages_total", { direction: "out", type: "message" })).toBe(6);
  expect(delta("websocket_messages_total", { direction: "out", type: "message_response" })).toBe(5);
  expect(delta("websocket_messages_total", { direction: "out", type: "error" })).toBe(3);
  expect(delta("websocket_errors_total", { code: "invalid_json" })).toBe(1);
  expect(delta("websocket_errors_total", { code: "unknown_type" })).toBe(1);
  expect(delta("websocket_errors_total", { code: "not_in_room" })).toBe(1);
  expect(delta("websocket_message_latency_seconds_count", {})).toBe(3);
  // The in-memory history reports what it holds: one room, its three messages, nothing evicted.
  expect(sample(m1, "history_memory_bytes")).toBe(0);
  expect(sample(m2, "history_memory_bytes")).toBeGreaterThan(0);
  expect(sample(m2, "history_memory_rooms")).toBe(1);
  expect(sample(m1, "history_memory_dedup_entries")).toBe(0);
  expect(sample(m2, "history_memory_dedup_entries")).toBe(3);
  expect(m2).toContain("history_memory_evicted_total 0");

  await bob.close(1000);
  alice.ws.close(4400);
  await alice.closed;
  await waitFor(() => srv.server.registry.size === 0, { what: "both connections released" });
  const m3 = await scrape(srv.httpUrl);
  expect(sample(m3, "websocket_connections_total")).toBe(0);
  expect(
    sample(m3, "websocket_disconnects_total", { code: "1000" }) -
      sample(m2, "websocket_disconnects_total", { code: "1000" }),
  ).toBe(1);
  expect(
    sample(m3, "websocket_disconnects_total", { code: "4400" }) -
      sample(m2, "websocket_disconnects_total", { code: "4400" }),
  ).toBe(1);
  expect(
    sample(m3, "websocket_connection_duration_seconds_count") -
      sample(m2, "websocket_connection_duration_seconds_count"),
  ).toBe(2);
});
