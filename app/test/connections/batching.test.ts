// FrameBatcher's guarantees, turn by turn. Bun's server is replaced by a recording double of its
// native topics (subscribe, publish to every subscriber, publish from a socket that skips it), which
// behaves as Bun documents: a publish reaches the sockets subscribed at the time of the call.
import { describe, expect, test } from "bun:test";
import { FrameBatcher, type NativePublisher } from "../../src/connections/batching";
import { Connection, type Socket } from "../../src/connections/connection";

/** Double of Bun's native pub/sub: topics hold sockets; each socket records what it was sent. */
class NativeTopics implements NativePublisher {
  readonly topics = new Map<string, Set<RecordingSocket>>();

  publish(topic: string, data: string, except?: RecordingSocket) {
    for (const socket of this.topics.get(topic) ?? []) if (socket !== except) socket.sent.push(data);
  }

  subscriberCount(topic: string) {
    return this.topics.get(topic)?.size ?? 0;
  }
}

class RecordingSocket {
  readonly sent: string[] = [];
  readyState = 1;
  constructor(private readonly native: NativeTopics) {}
  send(data: string) {
    this.sent.push(data);
    return data.length;
  }
  subscribe(topic: string) {
    let set = this.native.topics.get(topic);
    if (!set) this.native.topics.set(topic, (set = new Set()));
    set.add(this);
  }
  unsubscribe(topic: string) {
    this.native.topics.get(topic)?.delete(this);
  }
  publish(topic: string, data: string) {
    this.native.publish(topic, data, this);
    return data.length;
  }
  close() {
    this.readyState = 3;
  }
}

function setup(limits = { maxFrames: 64, maxBytes: 65536 }) {
  const native = new NativeTopics();
  const turns: (() => void)[] = [];
  const batcher = new FrameBatcher(native, limits, (task) => turns.push(task));
  const endTurn = () => {
    for (const task of turns.splice(0)) task();
  };
  let n = 0;
  const connect = (batched: boolean) => {
    const socket = new RecordingSocket(native);
    const connection = new Connection(`conn-${++n}`, `user-${n}`, socket as unknown as Socket, 0, 30_000);
    if (batched) connection.batcher = batcher;
    return { connection, sent: socket.sent };
  };
  return { batcher, endTurn, connect };
}

describe("FrameBatcher", () => {
  test("a turn's room frames reach a batched member as one joined frame, a plain member at once and one by one", () => {
    const { batcher, endTurn, connect } = setup();
    const batched = connect(true);
    const plain = connect(false);
    batcher.subscribe(batched.connection, "room:r");
    batcher.subscribe(plain.connection, "room:r");
    batcher.publish("room:r", "a");
    batcher.publish("room:r", "b");
    expect(plain.sent).toEqual(["a", "b"]);
    expect(batched.sent).toEqual([]);
    endTurn();
    expect(batched.sent).toEqual(["a\nb"]);
    expect(batcher.subscriberCount("room:r")).toBe(2);
  });

  test("what was published before a batched socket subscribed does not reach it; what came after does", () => {
    const { batcher, endTurn, connect } = setup();
    const early = connect(true);
    const late = connect(true);
    batcher.subscribe(early.connection, "room:r");
    batcher.publish("room:r", "before");
    batcher.subscribe(late.connection, "room:r");
    batcher.publish("room:r", "after");
    endTurn();
    expect(early.sent).toEqual(["before", "after"]);
    expect(late.sent).toEqual(["after"]);
  });

  test("what was published before a batched socket unsubscribed still reaches it", () => {
    const { batcher, endTurn, connect } = setup();
    const leaving = connect(true);
    const staying = connect(true);
    batcher.subscribe(leaving.connection, "room:r");
    batcher.subscribe(staying.connection, "room:r");
    batcher.publish("room:r", "one");
    batcher.unsubscribe(leaving.connection, "room:r");
    batcher.publish("room:r", "two");
    endTurn();
    expect(leaving.sent).toEqual(["one"]);
    expect(staying.sent).toEqual(["one", "two"]);
  });

  test("a batched sender's own frame skips it and keeps its place after the pending ones", () => {
    const { batcher, endTurn, connect } = setup();
    const sender = connect(true);
    const other = connect(true);
    const plain = connect(false);
    for (const c of [sender, other, plain]) batcher.subscribe(c.connection, "room:r");
    batcher.publish("room:r", "m1");
    batcher.publishFromSender(sender.connection, "room:r", "typing");
    batcher.publish("room:r", "m2");
    endTurn();
    expect(other.sent).toEqual(["m1", "typing", "m2"]);
    expect(sender.sent).toEqual(["m1", "m2"]);
    expect(plain.sent).toEqual(["m1", "typing", "m2"]);
  });

  test("a plain sender's own frame skips it and reaches batched members in order", () => {
    const { batcher, endTurn, connect } = setup();
    const sender = connect(false);
    const batched = connect(true);
    for (const c of [sender, batched]) batcher.subscribe(c.connection, "room:r");
    batcher.publish("room:r", "m1");
    batcher.publishFromSender(sender.connection, "room:r", "read");
    endTurn();
    expect(sender.sent).toEqual(["m1"]);
    expect(batched.sent).toEqual(["m1\nread"]);
  });

  test("the count and byte caps close a batch early; later frames follow in order", () => {
    const { endTurn, connect } = setup({ maxFrames: 3, maxBytes: 1024 });
    const c = connect(true);
    for (const frame of ["1", "2", "3", "4", "x".repeat(1000), "y".repeat(30), "z".repeat(2000), "5"])
      c.connection.send(frame);
    endTurn();
    expect(c.sent).toEqual(["1\n2\n3", `4\n${"x".repeat(1000)}`, "y".repeat(30), "z".repeat(2000), "5"]);
    for (const text of c.sent.slice(0, 3)) expect(Buffer.byteLength(text)).toBeLessThanOrEqual(1024);
  });

  test("the byte cap counts UTF-8 bytes, not characters", () => {
    const { batcher, endTurn, connect } = setup({ maxFrames: 64, maxBytes: 1024 });
    const c = connect(true);
    // 300 characters of 3 bytes each: 900 bytes; two of them do not fit in 1024.
    c.connection.send("€".repeat(300));
    c.connection.send("€".repeat(300));
    endTurn();
    expect(c.sent.length).toBe(2);
    expect(batcher.limits.maxBytes).toBe(1024);
  });

  test("a connection's pending frames are sent before it closes", () => {
    const { endTurn, connect } = setup();
    const c = connect(true);
    c.connection.send("error 1");
    c.connection.send("error 2");
    c.connection.close(1003, "too many invalid frames");
    expect(c.sent).toEqual(["error 1\nerror 2"]);
    endTurn();
    expect(c.sent).toEqual(["error 1\nerror 2"]);
  });

  test("frames for one connection and for a room are each kept in order, sent in the order of their first frame", () => {
    const { batcher, endTurn, connect } = setup();
    const c = connect(true);
    batcher.subscribe(c.connection, "room:r");
    c.connection.send("answer 1");
    batcher.publish("room:r", "m1");
    c.connection.send("answer 2");
    batcher.publish("room:r", "m2");
    endTurn();
    expect(c.sent).toEqual(["answer 1\nanswer 2", "m1\nm2"]);
  });

  test("a topic nobody here is in costs no native publish, and is forgotten when its last member leaves", () => {
    const { batcher, connect } = setup();
    const native = (batcher as unknown as { native: NativeTopics }).native;
    let publishes = 0;
    const publish = native.publish.bind(native);
    native.publish = (topic, data) => {
      publishes++;
      publish(topic, data);
    };
    batcher.publish("room:empty", "x");
    expect(publishes).toBe(0);
    const c = connect(false);
    batcher.subscribe(c.connection, "room:r");
    batcher.publish("room:r", "y");
    expect(publishes).toBe(1);
    batcher.unsubscribe(c.connection, "room:r");
    expect(batcher.subscriberCount("room:r")).toBe(0);
    batcher.publish("room:r", "z");
    expect(publishes).toBe(1);
  });
});
