// Tokens through the client library: renewal keeps a connection past its first token's expiry; an
// expired token without renewal ends the connection for good (4401 is not reconnected after).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { connect } from "../../client/index";
import { hsToken, TEST_SECRET } from "../helpers/jwt";
import { connId, startTestServer, type TestServer } from "../helpers/server";
import { Recorder } from "./support";

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer({
    AUTH_REQUIRED: "true",
    JWT_SECRET: TEST_SECRET,
    HEARTBEAT_INTERVAL: "200",
    PONG_TIMEOUT: "5000",
  });
});
afterAll(() => srv.stop());

test("authenticate renews the token on the open connection and for later reconnects", async () => {
  const client = connect(srv.httpUrl, {
    connectionId: connId("renew"),
    token: await hsToken("rita", { expiresInSeconds: 2 }),
  });
  const events = new Recorder(client);
  await events.state("open");
  const fresh = await hsToken("rita", { expiresInSeconds: 600 });
  const expiresAt = await client.authenticate(fresh);
  expect(expiresAt).toBeGreaterThan(Date.now() + 500_000);
  expect(new URL(client.url).searchParams.get("token")).toBe(fresh);
  await Bun.sleep(2500);
  expect(client.state).toBe("open");
  expect(await client.ping()).toBeGreaterThanOrEqual(0);
  client.close();
});

test("without renewal the connection closes with 4401 and the client does not reconnect", async () => {
  const client = connect(srv.httpUrl, {
    connectionId: connId("lapse"),
    token: await hsToken("lena", { expiresInSeconds: 2 }),
  });
  const events = new Recorder(client);
  await events.state("open");
  const closed = await events.next("state", (s) => s.state === "closed", 6000);
  expect(closed.code).toBe(4401);
  await Bun.sleep(1500);
  expect(client.state).toBe("closed");
});
