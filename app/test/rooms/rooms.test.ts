// Room membership and what members see of each other: presence, typing, read markers, history.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Frame } from "../helpers/client";
import { connId, startTestServer, type TestServer } from "../helpers/server";

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer();
});
afterAll(() => srv.stop());

const user = (name: string) => srv.connect(connId(), `user=${name}`);

describe("presence", () => {
  test("join and leave are announced to the room as presence_diff, once per user", async () => {
    const alice = await user("pa-alice");
    await alice.request({ type: "join", room: "pres" });
    expect(await alice.next("presence_diff")).toEqual({
      type: "presence_diff",
      room: "pres",
      joins: ["pa-alice"],
      leaves: [],
    });

    const bob = await user("pa-bob");
    await bob.request({ type: "join", room: "pres" });
    expect(await alice.next("presence_diff")).toEqual({
      type: "presence_diff",
      room: "pres",
      joins: ["pa-bob"],
      leaves: [],
    });

    // A second socket of the same user changes nothing anyone sees.
    const bobTab = await user("pa-bob");
    await bobTab.request({ type: "join", room: "pres" });
    expect((await alice.request({ type: "presence", room: "pres" })).members).toEqual(["pa-alice", "pa-bob"]);
    await bobTab.request({ type: "leave", room: "pres" });
    await alice.sync();
    expect(alice.all("presence_diff")).toEqual([]);

    await bob.request({ type: "leave", room: "pres" });
    expect(await alice.next("presence_diff")).toEqual({
      type: "presence_diff",
      room: "pres",
      joins: [],
      leaves: ["pa-bob"],
    });
    expect(await alice.request({ type: "presence", room: "pres" })).toMatchObject({
      type: "presence",
      room: "pres",
      members: ["pa-alice"],
    });
  });

  test("closing the socket leaves its rooms", async () => {
    const alice = await user("pc-alice");
    const bob = await user("pc-bob");
    await alice.request({ type: "join", room: "pres-close" });
    await bob.request({ type: "join", room: "pres-close" });
    await bob.close();
    expect(await alice.next((f) => f.type === "presence_diff" && f.leaves.length > 0)).toMatchObject({
      leaves: ["pc-bob"],
    });
    expect((await alice.request({ type: "presence", room: "pres-close" })).members).toEqual(["pc-alice"]);
  });

  test("after leave the room's messages stop and room requests are refused", async () => {
    const alice = await user("pl-alice");
    const bob = await user("pl-bob");
    await alice.request({ type: "join", room: "pres-left" });
    await bob.request({ type: "join", room: "pres-left" });
    await bob.request({ type: "leave", room: "pres-left" });
    await alice.request({ type: "message", room: "pres-left", text: "gone?", clientMsgId: "pl-1" });
    await bob.sync();
    expect(bob.all("message")).toEqual([]);
    expect((await bob.request({ type: "message", room: "pres-left", text: "hi", clientMsgId: "pl-2" })).code).toBe(
      "not_in_room",
    );
  });
});

describe("typing and read", () => {
  test("typing on and off reach every other member, not other rooms", async () => {
    const alice = await user("ty-alice");
    const bob = await user("ty-bob");
    const carol = await user("ty-carol");
    await alice.request({ type: "join", room: "ty-a" });
    await bob.request({ type: "join", room: "ty-a" });
    await carol.request({ type: "join", room: "ty-b" });
    await alice.request({ type: "typing", room: "ty-a", active: true });
    await alice.request({ type: "typing", room: "ty-a", active: false });
    expect(await bob.next("typing")).toEqual({ type: "typing", room: "ty-a", from: "ty-alice", active: true });
    expect(await bob.next("typing")).toEqual({ type: "typing", room: "ty-a", from: "ty-alice", active: false });
    await carol.sync();
    expect(carol.all("typing")).toEqual([]);
  });

  test("read markers reach the other members with the offset", async () => {
    const alice = await user("rm-alice");
    const bob = await user("rm-bob");
    await alice.request({ type: "join", room: "rm" });
    await bob.request({ type: "join", room: "rm" });
    const sent = await alice.request({ type: "message", room: "rm", text: "read me", clientMsgId: "rm-1" });
    await bob.request({ type: "read", room: "rm", offset: sent.offset });
    expect(await alice.next("read")).toEqual({ type: "read", room: "rm", from: "rm-bob", offset: sent.offset });
  });
});

describe("history", () => {
  test("pages backwards with before and limit; hasMore says whether older ones remain", async () => {
    const alice = await user("hi-alice");
    await alice.request({ type: "join", room: "hist" });
    for (let i = 1; i <= 5; i++)
      await alice.request({ type: "message", room: "hist", text: `h${i}`, clientMsgId: `h-${i}` });
    const offsets = (f: Frame) => f.messages.map((m: { offset: number }) => m.offset);

    const all = await alice.request({ type: "history", room: "hist" });
    expect(offsets(all)).toEqual([1, 2, 3, 4, 5]);
    expect(all.hasMore).toBe(false);
    expect(all.messages[0]).toMatchObject({
      room: "hist",
      offset: 1,
      from: "hi-alice",
      text: "h1",
      clientMsgId: "h-1",
    });
    expect(typeof all.messages[0].id).toBe("string");

    const newest = await alice.request({ type: "history", room: "hist", limit: 2 });
    expect(offsets(newest)).toEqual([4, 5]);
    expect(newest.hasMore).toBe(true);
    const older = await alice.request({ type: "history", room: "hist", before: 4, limit: 2 });
    expect(offsets(older)).toEqual([2, 3]);
    expect(older.hasMore).toBe(true);
    const oldest = await alice.request({ type: "history", room: "hist", before: 2, limit: 2 });
    expect(offsets(oldest)).toEqual([1]);
    expect(oldest.hasMore).toBe(false);
    const none = await alice.request({ type: "history", room: "hist", before: 1 });
    expect(none).toMatchObject({ type: "history", room: "hist", messages: [], hasMore: false });
  });

  test("a room without messages has an empty history", async () => {
    const alice = await user("he-alice");
    await alice.request({ type: "join", room: "hist-empty" });
    expect(await alice.request({ type: "history", room: "hist-empty", limit: 100 })).toMatchObject({
      messages: [],
      hasMore: false,
    });
  });
});
