// An application of the installed package: test/client/package.test.ts copies it into an empty
// project, compiles it with `tsc --strict` against the package's .d.ts and runs it under Node and Bun
// against the compiled server. It prints one JSON line with what it observed.
import { type ChatClient, ChatClientError, type ChatEvents, connect, randomId } from "@realtime-chat/client";

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const url = env("CHAT_URL");
const runtime = env("RUNTIME");

/** The runtime's own WebSocket, passed in, with a way to lose the network without a close frame. */
class DroppableWebSocket extends WebSocket {
  static latest: DroppableWebSocket | undefined;

  constructor(url: string) {
    super(url);
    DroppableWebSocket.latest = this;
  }

  /** What the client sees when the network drops: a close with 1006 and nothing after it. */
  drop() {
    const onclose = this.onclose;
    this.onclose = null;
    this.onmessage = null;
    // Node 20 has no CloseEvent constructor; the client reads only `code` and `reason`.
    type CloseEventLike = Parameters<NonNullable<WebSocket["onclose"]>>[0];
    onclose?.call(this, { code: 1006, reason: "network dropped" } as CloseEventLike);
    this.close();
  }
}

/** The next event of `type` matching `match`, or a rejection after `ms`. */
function next<K extends keyof ChatEvents>(
  client: ChatClient,
  type: K,
  match: (value: ChatEvents[K]) => boolean = () => true,
  ms = 10_000,
): Promise<ChatEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${String(type)} event within ${ms} ms`));
    }, ms);
    const off = client.on(type, (value) => {
      if (!match(value)) return;
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

const opened = (client: ChatClient) =>
  client.state === "open" ? Promise.resolve() : next(client, "state", (s) => s.state === "open").then(() => {});

const alice = connect(url, {
  connectionId: randomId("alice-"),
  token: env("TOKEN_ALICE"),
  WebSocket: DroppableWebSocket,
  backoff: { minMs: 100, maxMs: 500 },
});
const bob = connect(url, { connectionId: randomId("bob-"), token: env("TOKEN_BOB") });
await Promise.all([opened(alice), opened(bob)]);

const room = `pkg-${runtime}`;
await alice.join(room);
await bob.join(room);

// Send and receive.
const atBob = next(bob, "message", (m) => m.text === `hello from ${runtime}`);
const sent = await alice.send(room, `hello from ${runtime}`);
const received = await atBob;

// Resume: Alice's network drops; what Bob writes meanwhile is replayed to her once she is back.
const aliceMessages: string[] = [];
alice.on("message", (m) => aliceMessages.push(m.text));
const reconnecting = next(alice, "state", (s) => s.state === "reconnecting");
const rejoining = next(alice, "joined", (j) => j.rejoin);
DroppableWebSocket.latest?.drop();
await reconnecting;
await bob.send(room, "while alice was away");
const rejoined = await rejoining;
await opened(alice);
// Listeners go on before the send: the sender's own copy of a message comes before the answer.
const back = next(alice, "message", (m) => m.text === "back");
await alice.send(room, "back");
await back;

// Token renewal, before the first token expires.
const expiresAt = await alice.authenticate(env("TOKEN_ALICE_FRESH"));

// A refused request rejects with the server's error code; the connection stays open.
const refused = await alice.send("a-room-not-joined", "hello?").catch((e: unknown) => e);

// close() ends for good: the state says closed, with the close code.
const closing = next(alice, "state", (s) => s.state === "closed");
alice.close();
const closed = await closing;
bob.close();

console.log(
  JSON.stringify({
    runtime,
    sent: { offset: sent.offset, duplicate: sent.duplicate },
    received: { from: received.from, id: received.id === sent.id },
    resumed: alice.session?.resumed,
    rejoined: { recovered: rejoined.recovered },
    aliceMessages,
    renewed: typeof expiresAt === "number" && expiresAt > Date.now(),
    refused:
      refused instanceof ChatClientError ? { code: refused.code, temporary: refused.temporary } : String(refused),
    closed: { state: closed.state, code: closed.code },
  }),
);
