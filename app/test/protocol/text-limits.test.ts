// MAX_TEXT_LENGTH and MAX_MESSAGE_BYTES agree with their defaults: a text within MAX_TEXT_LENGTH
// characters is accepted whatever its characters take in UTF-8 or JSON, and one over it gets
// `text_too_long` with the connection kept, never a 1009 close.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { loadConfig } from "../../src/config";
import { connId, startTestServer, type TestServer } from "../helpers/server";

let srv: TestServer;
beforeAll(async () => {
  // The defaults of both limits, as an operator who sets neither gets them.
  srv = await startTestServer({});
});
afterAll(() => srv.stop());

describe("text length and frame size", () => {
  test("4,000 emoji (16 KB of UTF-8) are accepted and delivered; 4,001 get text_too_long, never 1009", async () => {
    const sender = await srv.connect(connId(), "user=emoji-sender");
    const reader = await srv.connect(connId(), "user=emoji-reader");
    await sender.request({ type: "join", room: "emoji" });
    await reader.request({ type: "join", room: "emoji" });

    const atLimit = "😀".repeat(4000);
    expect(Buffer.byteLength(atLimit)).toBe(16_000);
    expect(await sender.request({ type: "message", room: "emoji", text: atLimit, clientMsgId: "e-1" })).toMatchObject({
      for: "message",
      offset: 1,
    });
    expect((await reader.next("message")).text).toBe(atLimit);

    const over = await sender.request({ type: "message", room: "emoji", text: `${atLimit}😀`, clientMsgId: "e-2" });
    expect(over).toMatchObject({ type: "error", code: "text_too_long" });
    const direct = await sender.request({
      type: "direct",
      to: "emoji-reader",
      text: `${atLimit}😀`,
      clientMsgId: "e-3",
    });
    expect(direct).toMatchObject({ type: "error", code: "text_too_long" });
    expect((await sender.request({ type: "ping" })).type).toBe("pong");
    expect(sender.ws.readyState).toBe(WebSocket.OPEN);
  });

  test("a text of 4,000 characters that JSON escapes to 6 bytes each still fits in a frame", async () => {
    const client = await srv.connect(connId(), "user=escaped");
    await client.request({ type: "join", room: "escaped" });
    const text = "\u0001".repeat(4000);
    const frame = JSON.stringify({ type: "message", room: "escaped", text, clientMsgId: "x-1", ref: "r" });
    expect(Buffer.byteLength(frame)).toBeGreaterThan(24_000);
    client.send(frame);
    expect(await client.next((f) => f.ref === "r")).toMatchObject({ for: "message", offset: 1 });
  });

  test("MAX_MESSAGE_BYTES left empty follows MAX_TEXT_LENGTH; a value set is kept", () => {
    expect(loadConfig({}).maxMessageBytes).toBe(6 * 4000 + 1024);
    expect(loadConfig({ MAX_TEXT_LENGTH: "100" }).maxMessageBytes).toBe(6 * 100 + 1024);
    expect(loadConfig({ MAX_MESSAGE_BYTES: "2048" }).maxMessageBytes).toBe(2048);
  });
});
