// Idle-connection load generator (a child process of bench/run.ts). Opens `count` WebSockets and
// holds them without sending anything. Reads commands on stdin, one a line:
//   join       each connection joins a room of its own; answers once every join is acknowledged
//   await TEXT  answers `armed`, then once every connection has received a frame containing TEXT
//              (a broadcast notice), with the wall-clock time (Date.now()) the last one arrived
//   exit       closes everything and exits (so does the end of stdin)
// Each step prints one JSON line on stdout; failures go to stderr with exit code 1.
//
// Usage: bun bench/load/idle.ts '<json options>'

import { pool, WireClient } from "./wire";

interface IdleOptions {
  port: number;
  /** Path of connection i is `${pathPrefix}${i}`. */
  pathPrefix: string;
  first: number;
  count: number;
  /** Wait for the server's first frame (the chat server's `connection_established`). */
  waitFirstFrame: boolean;
  timeoutMs: number;
}

const options = JSON.parse(process.argv[2] ?? "{}") as IdleOptions;
const CONNECT_CONCURRENCY = 200;

function die(message: string): never {
  process.stderr.write(`idle load: ${message}\n`);
  process.exit(1);
}

let stopping = false;
/** The text an `await` command waits for, and which connections have received it. */
let awaited: string | undefined;
const got = new Array<boolean>(options.count).fill(false);
let received = 0;
const clients: WireClient[] = [];
const firstFrame: Promise<void>[] = [];
const joinAck: Promise<void>[] = [];
for (let n = 0; n < options.count; n++) {
  const i = options.first + n;
  let onFirst!: () => void;
  let onJoin!: () => void;
  firstFrame.push(new Promise<void>((resolve) => (onFirst = resolve)));
  joinAck.push(new Promise<void>((resolve) => (onJoin = resolve)));
  clients.push(
    new WireClient({
      host: "127.0.0.1",
      port: options.port,
      path: `${options.pathPrefix}${String(i).padStart(6, "0")}`,
      onText: (text) => {
        onFirst();
        if (awaited !== undefined && !got[n] && text.includes(awaited)) {
          got[n] = true;
          if (++received === options.count) {
            process.stdout.write(`${JSON.stringify({ received, at: Date.now() })}\n`);
          }
        }
        if (text.includes('"for":"join"')) onJoin();
        else if (text.startsWith('{"type":"error"')) die(`connection ${i} got ${text}`);
      },
      onClose: (reason) => {
        if (!stopping) die(`connection ${i}: ${reason}`);
      },
    }),
  );
}

const withTimeout = async (what: string, work: Promise<unknown>) => {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} did not finish within ${options.timeoutMs} ms`)),
      options.timeoutMs,
    );
  });
  try {
    await Promise.race([work, timeout]);
  } catch (error) {
    die((error as Error).message);
  } finally {
    clearTimeout(timer);
  }
};

const started = performance.now();
await withTimeout(
  `opening ${options.count} connections`,
  pool(clients, CONNECT_CONCURRENCY, (client) => client.connect(options.timeoutMs)),
);
if (options.waitFirstFrame) await withTimeout("first frames", Promise.all(firstFrame));
process.stdout.write(`${JSON.stringify({ opened: clients.length, ms: Math.round(performance.now() - started) })}\n`);

const commands = async () => {
  let buffered = "";
  for await (const chunk of Bun.stdin.stream()) {
    buffered += new TextDecoder().decode(chunk);
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const command = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (command === "join") {
        const t = performance.now();
        clients.forEach((client, n) => {
          client.sendText(JSON.stringify({ type: "join", room: `idle-${options.first + n}` }));
        });
        await withTimeout("joins", Promise.all(joinAck));
        process.stdout.write(`${JSON.stringify({ joined: clients.length, ms: Math.round(performance.now() - t) })}\n`);
      } else if (command.startsWith("await ")) {
        awaited = command.slice(6);
        got.fill(false);
        received = 0;
        process.stdout.write(`${JSON.stringify({ armed: true })}\n`);
      } else if (command === "exit") {
        return;
      }
    }
  }
};
await commands();
stopping = true;
for (const client of clients) client.close();
process.exit(0);
