// Many-rooms load generator (a child process of bench/shards.ts). N clients in R rooms, client i in
// room floor(i / (N / R)) and on ports[i % ports.length], so each room has members on every
// instance. Senders take turns in client order, each sending a batch into its own room, keeping at
// most `window` messages in flight (sent but not yet received by every member of their room). Room
// message frames received are counted over the measured interval, with the CPU time of the listed
// processes. On stdout it prints `measuring` when the measured interval starts, `measured` when it
// ends (so a caller can read counters of its own over the same interval), then one JSON line with the
// result; progress and failures go to stderr.
//
// Usage: bun bench/load/rooms.ts '<json options>'

import { cpuSeconds, processCpuSeconds } from "../lib/cpu";
import { encodeClientFrame, WireClient } from "./wire";

export interface RoomsOptions {
  ports: number[];
  /** Path of client i is `${pathPrefix}${i}` (three digits). */
  pathPrefix: string;
  clients: number;
  window: number;
  warmupMs: number;
  durationMs: number;
  /** Processes whose CPU time is read over the measured interval (servers, Redis). */
  processes: { name: string; pid: number }[];
  /** Rooms are named `${room}-<k>`. */
  room: string;
  rooms: number;
}

export interface RoomsResult {
  deliveries: number;
  seconds: number;
  deliveriesPerSecond: number;
  messagesPerSecond: number;
  frameBytes: number;
  loadCpu: number;
  /** Messages some client never received: sent x clients - received, once the room has drained. */
  missing: number;
  /** Share of one core per measured process, by name. */
  cpu: Record<string, number>;
}

const options = JSON.parse(process.argv[2] ?? "{}") as RoomsOptions;
const perRoom = Math.floor(options.clients / options.rooms);
if (perRoom < 1 || options.clients % options.rooms !== 0) die("clients must be a multiple of rooms");
const roomOf = (i: number) => `${options.room}-${Math.floor(i / perRoom)}`;
const SETUP_TIMEOUT_MS = 15_000;
const STALL_MS = 3_000;

function die(message: string): never {
  process.stderr.write(`rooms load: ${message}\n`);
  process.exit(1);
}

let stopping = false;
const clients: WireClient[] = [];
const joined: Promise<void>[] = [];
for (let i = 0; i < options.clients; i++) {
  let resolveJoin!: () => void;
  joined.push(new Promise<void>((resolve) => (resolveJoin = resolve)));
  clients.push(
    new WireClient({
      host: "127.0.0.1",
      port: options.ports[i % options.ports.length]!,
      path: `${options.pathPrefix}${String(i).padStart(3, "0")}`,
      onText: (text) => {
        if (text.includes('"for":"join"')) resolveJoin();
        else if (text.startsWith('{"type":"error"')) die(`client ${i} got ${text}`);
      },
      onClose: (reason) => {
        if (!stopping) die(`client ${i}: ${reason}`);
      },
    }),
  );
}

const deadline = setTimeout(
  () => die(`clients did not connect and join within ${SETUP_TIMEOUT_MS} ms`),
  SETUP_TIMEOUT_MS,
);
await Promise.all(clients.map((c) => c.connect(SETUP_TIMEOUT_MS))).catch((e: Error) => die(e.message));
for (const [i, client] of clients.entries()) client.sendText(JSON.stringify({ type: "join", room: roomOf(i) }));
await Promise.all(joined);
clearTimeout(deadline);
// Counting starts once every join is answered; set-up frames are not counted.
for (const client of clients) client.counting = true;

// Every message has the same length (fixed-width sequence numbers), so the frames a pump sends to
// one client are encoded straight into one buffer and written with one call.
const encoder = new TextEncoder();
const runId = process.pid.toString(36);
const SEQ_DIGITS = 10;
// Room names have the same length within a run only by chance: one template per room.
const templates = new Map<string, { template: Uint8Array; textSeqAt: number; idSeqAt: number; frameLength: number }>();
const templateOf = (room: string) => {
  let t = templates.get(room);
  if (!t) {
    const text = `{"type":"message","room":"${room}","text":"bench payload ${"0".repeat(SEQ_DIGITS)}","clientMsgId":"${runId}-${"0".repeat(SEQ_DIGITS)}"}`;
    const template = encoder.encode(text);
    t = {
      template,
      // Where the sequence number goes: in the text and at the end of clientMsgId (ASCII).
      textSeqAt: text.indexOf("payload ") + "payload ".length,
      idSeqAt: text.length - 2 - SEQ_DIGITS,
      frameLength: encodeClientFrame(template).length,
    };
    templates.set(room, t);
  }
  return t;
};
const encodeInto = (room: string, target: Uint8Array, at: number, seq: number) => {
  const { template, textSeqAt, idSeqAt } = templateOf(room);
  const payload = template.slice();
  let n = seq;
  for (let d = SEQ_DIGITS - 1; d >= 0; d--) {
    const digit = 0x30 + (n % 10);
    payload[textSeqAt + d] = digit;
    payload[idSeqAt + d] = digit;
    n = Math.floor(n / 10);
  }
  target.set(encodeClientFrame(payload), at);
};

let sent = 0;
let next = 0;
/** Messages every member of their room received, counted as deliveries divided by members. */
const received = () => {
  let total = 0;
  for (const c of clients) total += c.messages;
  return Math.floor(total / perRoom);
};
let lastProgressAt = performance.now();
let lastMin = 0;
// Free window slots are sent in batches of at least a sixteenth of the window, all from the next
// sender in turn, in one write: one small write per received chunk would make the load generator's
// system calls, not the server, the limit.
const minBatch = Math.max(1, Math.floor(options.window / 64));
const pump = () => {
  if (stopping) return;
  const done = received();
  if (done !== lastMin) {
    lastMin = done;
    lastProgressAt = performance.now();
  }
  const free = options.window - (sent - done);
  if (free < minBatch) return;
  // Small batches, so that the messages in flight are spread over many rooms.
  const count = Math.min(free, minBatch);
  const room = roomOf(next);
  const { frameLength } = templateOf(room);
  const batch = new Uint8Array(count * frameLength);
  for (let k = 0; k < count; k++) encodeInto(room, batch, k * frameLength, sent++);
  clients[next]!.sendFrame(batch);
  next = (next + 1) % clients.length;
  if (free - count >= minBatch) queueMicrotask(pump);
};
for (const client of clients) client.onChunk = pump;

const sample = () => {
  let deliveries = 0;
  let bytes = 0;
  for (const c of clients) {
    deliveries += c.messages;
    bytes += c.messageBytes;
  }
  return {
    deliveries,
    bytes,
    sent,
    at: performance.now(),
    load: processCpuSeconds(),
    cpu: options.processes.map((p) => cpuSeconds(p.pid)),
  };
};

const stall = setInterval(() => {
  if (performance.now() - lastProgressAt > STALL_MS) {
    die(`no progress for ${STALL_MS} ms (sent ${sent}, received by every member ${received()}): frames dropped?`);
  }
}, 500);

pump();
await Bun.sleep(options.warmupMs);
const start = sample();
process.stdout.write("measuring\n");
await Bun.sleep(options.durationMs);
const end = sample();
process.stdout.write("measured\n");
stopping = true;
clearInterval(stall);
// Every member should end up with every message of its room: wait for the rooms to drain.
const drainUntil = performance.now() + 3000;
while (received() < sent && performance.now() < drainUntil) await Bun.sleep(20);
const missing = sent * perRoom - clients.reduce((n, c) => n + c.messages, 0);

const refused = clients.reduce((n, c) => n + c.errors, 0);
if (refused > 0)
  die(`the server answered ${refused} messages with an error, first: ${clients.find((c) => c.firstError)?.firstError}`);

const seconds = (end.at - start.at) / 1000;
const deliveries = end.deliveries - start.deliveries;
const result: RoomsResult = {
  deliveries,
  seconds,
  deliveriesPerSecond: deliveries / seconds,
  messagesPerSecond: (end.sent - start.sent) / seconds,
  frameBytes: deliveries > 0 ? (end.bytes - start.bytes) / deliveries : 0,
  loadCpu: (end.load - start.load) / seconds,
  missing,
  cpu: Object.fromEntries(options.processes.map((p, k) => [p.name, (end.cpu[k]! - start.cpu[k]!) / seconds])),
};
process.stdout.write(`${JSON.stringify(result)}\n`);
for (const client of clients) client.close();
process.exit(0);
