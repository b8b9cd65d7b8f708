// Broadcast load generator (a child process of bench/run.ts and bench/redis.ts). N clients join one
// room, client i on ports[i % ports.length]; they take turns sending, keeping at most `window`
// messages in flight (sent but not yet received by every member). Room message frames received by
// all clients are counted over the measured interval, with the CPU time of the listed processes.
// With two instances of the chat server sharing Redis, half the room is on each and consecutive
// senders alternate between them, so every message reaches half its members through the backplane.
// Prints one JSON line with the result on stdout; progress and failures go to stderr.
//
// Usage: bun bench/load/broadcast.ts '<json options>'

import { cpuSeconds, processCpuSeconds } from "../lib/cpu";
import { connectAndJoin, encodeClientFrame, protocols, WireClient, type WireProtocol } from "./wire";

export interface BroadcastOptions {
  ports: number[];
  /** Path of client i is `${pathPrefix}${i}${pathSuffix}` (three digits). */
  pathPrefix: string;
  /** A query string, `?batch=1` for the chat server's batched frames; none by default. */
  pathSuffix?: string;
  clients: number;
  window: number;
  warmupMs: number;
  durationMs: number;
  /** Processes whose CPU time is read over the measured interval (servers, Redis). */
  processes: { name: string; pid: number }[];
  room: string;
  /** Only clients on the first `senderPorts` ports send (default: all); a diagnostic. */
  senderPorts?: number;
  /** Extra characters in each message text, to compare servers at equal delivered frame sizes. */
  padding?: number;
  /** "chat" (default), or "centrifugo": its JSON protocol, the room a channel. */
  protocol?: WireProtocol;
}

export interface BroadcastResult {
  deliveries: number;
  seconds: number;
  deliveriesPerSecond: number;
  messagesPerSecond: number;
  frameBytes: number;
  /** Room messages per WebSocket frame that held any (1 without batched frames). */
  deliveriesPerFrame: number;
  loadCpu: number;
  /** Messages some client never received: sent x clients - received, once the room has drained. */
  missing: number;
  /** Share of one core per measured process, by name. */
  cpu: Record<string, number>;
}

const options = JSON.parse(process.argv[2] ?? "{}") as BroadcastOptions;
const SETUP_TIMEOUT_MS = 15_000;
const STALL_MS = 3_000;
const protocol = options.protocol ?? "chat";
const wire = protocols[protocol];

function die(message: string): never {
  process.stderr.write(`broadcast load: ${message}\n`);
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
      path: `${options.pathPrefix}${String(i).padStart(3, "0")}${options.pathSuffix ?? ""}`,
      protocol,
      onText: (text) => {
        if (wire.isJoined(text)) resolveJoin();
        else if (wire.isError(text)) die(`client ${i} got ${text}`);
      },
      onClose: (reason) => {
        if (!stopping) die(`client ${i}: ${reason}`);
      },
    }),
  );
}

await connectAndJoin(clients, joined, options.room, SETUP_TIMEOUT_MS, die, protocol);
// Counting starts once every join is answered; set-up frames are not counted.
for (const client of clients) client.counting = true;

// Every message has the same length (fixed-width sequence numbers), so the frames a pump sends to
// one client are encoded straight into one buffer and written with one call.
const encoder = new TextEncoder();
const runId = process.pid.toString(36);
const SEQ_DIGITS = 10;
const zeros = "0".repeat(SEQ_DIGITS);
const templateText = wire.message(
  options.room,
  `${"x".repeat(options.padding ?? 0)}bench payload ${zeros}`,
  `${runId}-${zeros}`,
);
const template = encoder.encode(templateText);
// Where the sequence number goes: in the text and, for the chat server, at the end of clientMsgId
// (ASCII: chars are bytes). Centrifugo has no message id to deduplicate by.
const textSeqAt = templateText.indexOf("payload ") + "payload ".length;
const idSeqAt = protocol === "chat" ? templateText.length - 2 - SEQ_DIGITS : textSeqAt;
const frameLength = encodeClientFrame(template).length;
const encodeInto = (target: Uint8Array, at: number, seq: number) => {
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

const senders = clients.filter((_, i) => i % options.ports.length < (options.senderPorts ?? options.ports.length));
let sent = 0;
let next = 0;
const minReceived = () => {
  let min = Infinity;
  for (const c of clients) if (c.messages < min) min = c.messages;
  return min;
};
let lastProgressAt = performance.now();
let lastMin = 0;
// Free window slots are sent in batches of at least a sixteenth of the window, all from the next
// sender in turn, in one write: one small write per received chunk would make the load generator's
// system calls, not the server, the limit.
const minBatch = Math.max(1, Math.floor(options.window / 16));
const pump = () => {
  if (stopping) return;
  const received = minReceived();
  if (received !== lastMin) {
    lastMin = received;
    lastProgressAt = performance.now();
  }
  const free = options.window - (sent - received);
  if (free < minBatch) return;
  const batch = new Uint8Array(free * frameLength);
  for (let k = 0; k < free; k++) encodeInto(batch, k * frameLength, sent++);
  senders[next]!.sendFrame(batch);
  next = (next + 1) % senders.length;
};
for (const client of clients) client.onChunk = pump;

const sample = () => {
  let deliveries = 0;
  let bytes = 0;
  let wsFrames = 0;
  for (const c of clients) {
    deliveries += c.messages;
    bytes += c.messageBytes;
    wsFrames += c.messageFrames;
  }
  return {
    deliveries,
    bytes,
    wsFrames,
    sent,
    at: performance.now(),
    load: processCpuSeconds(),
    cpu: options.processes.map((p) => cpuSeconds(p.pid)),
  };
};

const stall = setInterval(() => {
  if (performance.now() - lastProgressAt > STALL_MS) {
    die(
      `no message reached every client for ${STALL_MS} ms (sent ${sent}, slowest client received ${minReceived()}): frames dropped?`,
    );
  }
}, 500);

pump();
await Bun.sleep(options.warmupMs);
const start = sample();
await Bun.sleep(options.durationMs);
const end = sample();
stopping = true;
clearInterval(stall);
// Every client should end up with every message sent: wait for the room to drain, then count gaps.
const drainUntil = performance.now() + 3000;
while (minReceived() < sent && performance.now() < drainUntil) await Bun.sleep(20);
const missing = clients.reduce((n, c) => n + (sent - c.messages), 0);

const refused = clients.reduce((n, c) => n + c.errors, 0);
if (refused > 0)
  die(`the server answered ${refused} messages with an error, first: ${clients.find((c) => c.firstError)?.firstError}`);

const seconds = (end.at - start.at) / 1000;
const deliveries = end.deliveries - start.deliveries;
const result: BroadcastResult = {
  deliveries,
  seconds,
  deliveriesPerSecond: deliveries / seconds,
  messagesPerSecond: (end.sent - start.sent) / seconds,
  frameBytes: deliveries > 0 ? (end.bytes - start.bytes) / deliveries : 0,
  deliveriesPerFrame: end.wsFrames > start.wsFrames ? deliveries / (end.wsFrames - start.wsFrames) : 0,
  loadCpu: (end.load - start.load) / seconds,
  missing,
  cpu: Object.fromEntries(options.processes.map((p, k) => [p.name, (end.cpu[k]! - start.cpu[k]!) / seconds])),
};
process.stdout.write(`${JSON.stringify(result)}\n`);
for (const client of clients) client.close();
process.exit(0);
