import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { TestClient } from "../helpers/client";
import { upgrade } from "../helpers/http";
import { hsToken, TEST_SECRET } from "../helpers/jwt";
import { connId, startTestServer, type TestServer } from "../helpers/server";

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

describe("authentication", () => {
  test("no token, a forged token or an expired one is refused with 401 before the upgrade", async () => {
    const missing = await upgrade(srv.wsUrl(connId(), "user=mallory"));
    expect(missing).toMatchObject({ status: 401, body: { error: "missing_token" } });
    const forged = await upgrade(
      srv.wsUrl(connId(), `token=${await hsToken("mallory", { secret: "another-secret-of-32-characters-or-more" })}`),
    );
    expect(forged).toMatchObject({ status: 401, body: { error: "invalid_token" } });
    const expired = await upgrade(srv.wsUrl(connId(), `token=${await hsToken("alice", { expiresInSeconds: -60 })}`));
    expect(expired).toMatchObject({ status: 401, body: { error: "token_expired" } });
  });

  test("the token's sub is the user, whichever way the token comes, and ?user= cannot override it", async () => {
    const token = await hsToken("alice");
    const byQuery = await TestClient.connect(srv.wsUrl(connId(), `token=${token}&user=mallory`), {
      waitEstablished: false,
    });
    const cookieId = connId();
    const viaCookie = new WebSocket(srv.wsUrl(cookieId), {
      headers: { cookie: `other=1; chat_token=${token}` },
    } as unknown as string[]);
    const byCookie = new TestClient(viaCookie);
    await byCookie.opened;
    const viaProtocol = new WebSocket(srv.wsUrl(connId()), ["chat.v1", `bearer.${token}`]);
    const byProtocol = new TestClient(viaProtocol);
    await byProtocol.opened;
    expect(viaProtocol.protocol).toBe("chat.v1");
    const established = await Promise.all([byQuery, byCookie, byProtocol].map((c) => c.next("connection_established")));
    expect(established.map((e) => e.userId)).toEqual(["alice", "alice", "alice"]);
    const answer = await byQuery.request({ type: "ping" });
    expect(answer.type).toBe("pong");
    await Promise.all([byQuery.close(), byCookie.close(), byProtocol.close()]);
  });

  test("a connection whose token expires is closed with 4401, unless an auth frame renews it", async () => {
    const short = await TestClient.connect(
      srv.wsUrl(connId(), `token=${await hsToken("bob", { expiresInSeconds: 2 })}`),
    );
    const renewed = await TestClient.connect(
      srv.wsUrl(connId(), `token=${await hsToken("carol", { expiresInSeconds: 2 })}`),
    );
    const fresh = await renewed.request({ type: "auth", token: await hsToken("carol", { expiresInSeconds: 600 }) });
    expect(fresh).toMatchObject({ type: "message_response", for: "auth" });
    expect(fresh.expiresAt).toBeGreaterThan(Date.now() + 500_000);
    const wrongUser = await renewed.request({ type: "auth", token: await hsToken("mallory") });
    expect(wrongUser).toMatchObject({ type: "error", code: "forbidden" });
    expect((await short.closed).code).toBe(4401);
    expect(renewed.ws.readyState).toBe(WebSocket.OPEN);
    expect((await renewed.request({ type: "ping" })).type).toBe("pong");
    await renewed.close();
  }, 10_000);

  test("rooms named admin:* need the admin role", async () => {
    const user = await TestClient.connect(srv.wsUrl(connId(), `token=${await hsToken("dave")}`));
    const admin = await TestClient.connect(srv.wsUrl(connId(), `token=${await hsToken("erin", { roles: ["admin"] })}`));
    expect(await user.request({ type: "join", room: "admin:ops" })).toMatchObject({ type: "error", code: "forbidden" });
    expect(await admin.request({ type: "join", room: "admin:ops" })).toMatchObject({
      type: "message_response",
      for: "join",
    });
    expect(await user.request({ type: "join", room: "public:lobby" })).toMatchObject({ type: "message_response" });
    await Promise.all([user.close(), admin.close()]);
  });
});

describe("JWKS", () => {
  test("tokens signed with a key from JWT_JWKS_URL are accepted; others are not", async () => {
    const { publicKey, privateKey } = await generateKeyPair("ES256");
    const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" };
    const jwks = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => Response.json({ keys: [jwk] }) });
    const server = await startTestServer({
      AUTH_REQUIRED: "true",
      JWT_JWKS_URL: `http://127.0.0.1:${jwks.port}/jwks.json`,
    });
    const sign = (sub: string) =>
      new SignJWT({})
        .setProtectedHeader({ alg: "ES256", kid: "k1" })
        .setSubject(sub)
        .setExpirationTime("10m")
        .sign(privateKey);
    const client = await TestClient.connect(server.wsUrl(connId(), `token=${await sign("frank")}`));
    expect((await client.request({ type: "ping" })).type).toBe("pong");
    const hs = await upgrade(server.wsUrl(connId(), `token=${await hsToken("frank")}`));
    expect(hs.status).toBe(401);
    await client.close();
    await server.stop();
    jwks.stop(true);
  });
});

describe("origin allow-list", () => {
  test("upgrades from other origins get 403; listed origins and non-browser clients get in", async () => {
    const server = await startTestServer({ ALLOWED_ORIGINS: "https://chat.example.com" });
    const evil = await upgrade(server.wsUrl(connId()), { origin: "https://evil.example.net" });
    expect(evil).toMatchObject({ status: 403, body: { error: "forbidden_origin" } });
    expect((await upgrade(server.wsUrl(connId()), { origin: "https://chat.example.com" })).status).toBe(101);
    expect((await upgrade(server.wsUrl(connId()))).status).toBe(101);
    await server.stop();
  });
});
