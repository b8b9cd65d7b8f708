// Where a token comes from: a cookie that is not valid percent-encoding is an invalid token, never a
// failed request; the token offered as a `bearer.` subprotocol is never sent back as the answer.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { TestClient } from "../helpers/client";
import { upgrade } from "../helpers/http";
import { hsToken, TEST_SECRET } from "../helpers/jwt";
import { connId, startTestServer, type TestServer } from "../helpers/server";

let srv: TestServer;
let open: TestServer;
beforeAll(async () => {
  srv = await startTestServer({ AUTH_REQUIRED: "true", JWT_SECRET: TEST_SECRET });
  open = await startTestServer({});
});
afterAll(async () => {
  await Promise.all([srv.stop(), open.stop()]);
});

describe("malformed tokens", () => {
  test("a chat_token cookie that is not valid percent-encoding is an invalid token (401), not a 500", async () => {
    for (const cookie of ["chat_token=%", "chat_token=%zz", "a=1; chat_token=abc%E0%A4%A"]) {
      const answer = await upgrade(srv.wsUrl(connId()), { cookie });
      expect({ cookie, status: answer.status, error: answer.body?.error }).toEqual({
        cookie,
        status: 401,
        error: "invalid_token",
      });
    }
    // The same bytes in the query string were already answered so; kept that way.
    expect(await upgrade(srv.wsUrl(connId(), "token=%"))).toMatchObject({
      status: 401,
      body: { error: "invalid_token" },
    });
  });

  test("without auth the cookie is ignored, malformed or not", async () => {
    const answer = await upgrade(open.wsUrl(connId(), "user=cookie-user"), { cookie: "chat_token=%" });
    expect(answer.status).toBe(101);
  });
});

describe("subprotocols", () => {
  test("a bearer-only offer is answered with chat.v1, never with the token", async () => {
    const token = await hsToken("proto-user");
    const only = await upgrade(srv.wsUrl(connId()), { "sec-websocket-protocol": `bearer.${token}` });
    expect(only.status).toBe(101);
    expect(only.headers["sec-websocket-protocol"]).toBe("chat.v1");
    const withOther = await upgrade(srv.wsUrl(connId()), { "sec-websocket-protocol": `bearer.${token}, graphql-ws` });
    expect(withOther.headers["sec-websocket-protocol"]).toBe("graphql-ws");
    const withChat = await upgrade(srv.wsUrl(connId()), { "sec-websocket-protocol": `bearer.${token}, chat.v1` });
    expect(withChat.headers["sec-websocket-protocol"]).toBe("chat.v1");
  });

  test("a browser-style client offering chat.v1 and the bearer entry connects as the token's user", async () => {
    const ws = new WebSocket(srv.wsUrl(connId()), ["chat.v1", `bearer.${await hsToken("proto-browser")}`]);
    const client = new TestClient(ws);
    await client.opened;
    expect(ws.protocol).toBe("chat.v1");
    expect(await client.next("connection_established")).toMatchObject({ userId: "proto-browser" });
    await client.close();
  });
});
