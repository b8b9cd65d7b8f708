// Names a client chooses (rooms, user ids, connectionIds) are plain keys: ones that are also
// properties of every JavaScript object (`__proto__`, `constructor`, ...) work like any other,
// through joins, messages, presence, direct messages, history and a resumed session.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connId, startTestServer, type TestServer } from "../helpers/server";
import { waitFor } from "../helpers/wait";

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer({});
});
afterAll(() => srv.stop());

const ROOMS = ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "valueOf", "__defineGetter__"];

describe("names that are object prototype keys", () => {
  test("rooms named __proto__, constructor, ... are joined, used and restored by a resumed session", async () => {
    const id = connId("__proto__");
    const watcher = await srv.connect(connId(), "user=constructor");
    let client = await srv.connect(id, "user=__proto__");
    for (const room of ROOMS) {
      await watcher.request({ type: "join", room });
      expect(await client.request({ type: "join", room })).toMatchObject({ for: "join", room, offset: 0 });
      const sent = await client.request({ type: "message", room, text: `in ${room}`, clientMsgId: `m-${room}` });
      expect(sent).toMatchObject({ for: "message", room, offset: 1 });
      expect(await watcher.next((f) => f.type === "message" && f.room === room)).toMatchObject({
        from: "__proto__",
        text: `in ${room}`,
      });
      expect((await watcher.request({ type: "presence", room })).members).toEqual(["__proto__", "constructor"]);
    }
    await client.close();
    await waitFor(() => srv.server.registry.get(id) === undefined, { what: "the socket released" });

    client = await srv.connect(id, "user=__proto__", { waitEstablished: false });
    const established = await client.next("connection_established");
    expect(established).toMatchObject({ userId: "__proto__", resumed: true });
    expect([...established.rooms].sort()).toEqual([...ROOMS].sort());
    const history = await client.request({ type: "history", room: "__proto__" });
    expect(history.messages.map((m: { text: string }) => m.text)).toEqual(["in __proto__"]);
  });

  test("users and connectionIds named like prototype keys connect, message each other and resume", async () => {
    for (const name of ["__proto__", "constructor", "toString", "hasOwnProperty"]) {
      const id = name.length >= 8 ? name : `${name}-conn`;
      const sender = await srv.connect(connId(), "user=valueOf");
      let client = await srv.connect(id, `user=${name}`);
      const direct = await sender.request({ type: "direct", to: name, text: `hi ${name}`, clientMsgId: `d-${name}` });
      expect(direct).toMatchObject({ for: "direct", to: name });
      expect(await client.next("direct")).toMatchObject({ from: "valueOf", to: name });
      await client.request({ type: "join", room: `room-${name}` });
      await client.close();
      await waitFor(() => srv.server.registry.get(id) === undefined, { what: `${id} released` });
      client = await srv.connect(id, `user=${name}`, { waitEstablished: false });
      expect(await client.next("connection_established")).toMatchObject({
        connectionId: id,
        userId: name,
        resumed: true,
        rooms: [`room-${name}`],
      });
      await Promise.all([client.close(), sender.close()]);
      await waitFor(() => srv.server.registry.get(id) === undefined, { what: `${id} released` });
    }
  });
});
