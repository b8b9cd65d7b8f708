// Delivery latency through the Redis backplane (a child process of bench/redis.ts). Clients join one
// room, client i on ports[i % ports.length]; the first `senders` clients (so one on each instance
// with two ports) send at a steady total `rate` of messages per second, paced by the clock, each
// message text holding its send time: {"sentAt":<performance.now()>,"sender":s,"seq":n}. Senders
// and receivers live in this one process, so send and receipt times come from the same clock.
//
// For every message sent during the measured interval, the latency from send to receipt is taken at
// every member except its sender, split by where the member is: on the sender's instance ("same":
// the message went client -> instance -> client) or on another ("other": it also crossed Redis
// pub/sub and the other instance). The hop of a message is the median of its "other" latencies
// minus the median of its "same" ones.
// Prints one JSON line with the result on stdout; progress and failures go to stderr.
//
// Usage: bun bench/load/hop-latency.ts '<json options>'

import { cpuSeconds, processCpuSeconds } from "../lib/cpu";
import { type Percentiles, percentiles } from "../lib/stats";
import { connectAndJoin, protocols, WireClient, type WireProtocol } from "./wire";

export interface HopLatencyOptions {
  ports: number[];
  /** Path of client i is `${pathPrefix}${i}${pathSuffix}` (three digits). */
  pathPrefix: string;
  /** A query string, `?batch=1` for the chat server's batched frames; none by default. */
  pathSuffix?: string;
  clients: number;
  senders: number;
  /** Messages per second, all senders together. */
  rate: number;
  warmupMs: number;
  durationMs: number;
  /** Longest wait after the last send for the measured messages to arrive. */
  drainMs: number;
  processes: { name: string; pid: number }[];
  room: string;
  /** "chat" (default), or "centrifugo": its JSON protocol, the room a channel. */
  protocol?: WireProtocol;
}

export interface HopLatencyResult {
  /** Messages sent during the measured interval, and their rate. */
  messages: number;
  messagesPerSecond: number;
  /** Receipts expected (messages x members other than the sender) and missing after the drain. */
  expected: number;
  missing: number;
  /** Of the missing receipts, those on the sender's instance; and how many messages lack any. */
  missingSame: number;
  messagesIncomplete: number;
  /** Latency in ms per receipt, by where the receiver is, and the hop per message. */
  same: Percentiles;
  other: Percentiles;
  hop: Percentiles;
  /** Longest gap between two pacing ticks in the measured interval (ms): how late a send could be. */
  worstTickGapMs: number;
  loadCpu: number;
  cpu: Record<string, number>;
}

const options = JSON.parse(process.argv[2] ?? "{}") as HopLatencyOptions;
const SETUP_TIMEOUT_MS = 15_000;
const ports = options.ports;
const instanceOf = (client: number) => client % ports.length;
const protocol = options.protocol ?? "chat";
const wire = protocols[protocol];

function die(message: string): never {
  process.stderr.write(`hop latency load: ${message}\n`);
  process.exit(1);
}

/** Per measured message: its sender's instance and the latencies of its receivers, by side. */
interface Track {
  instance: number;
  same: number[];
  other: number[];
}
const tracks = new Map<string, Track>();
let measureFrom = Infinity;
let measureTo = Infinity;

let stopping = false;
const clients: WireClient[] = [];
const joined: Promise<void>[] = [];
for (let i = 0; i < options.clients; i++) {
  let resolveJoin!: () => void;
  joined.push(new Promise<void>((resolve) => (resolveJoin = resolve)));
  const instance = instanceOf(i);
  clients.push(
    new WireClient({
      host: "127.0.0.1",
      port: ports[instance]!,
      path: `${options.pathPrefix}${String(i).padStart(3, "0")}${options.pathSuffix ?? ""}`,
      protocol,
      onText: (text) => {
        const receivedAt = performance.now();
        const messageText = wire.messageText(text);
        if (messageText !== undefined) {
          const body = JSON.parse(messageText) as { sentAt: number; sender: number; seq: number };
          if (body.sender === i || body.sentAt < measureFrom || body.sentAt >= measureTo) return;
          const track = tracks.get(`${body.sender}:${body.seq}`);
          if (!track) return;
          (track.instance === instance ? track.same : track.other).push(receivedAt - body.sentAt);
        } else if (wire.isJoined(text)) {
          resolveJoin();
        } else if (wire.isError(text)) {
          die(`client ${i} got ${text}`);
        }
      },
      onClose: (reason) => {
        if (!stopping) die(`client ${i}: ${reason}`);
      },
    }),
  );
}

await connectAndJoin(clients, joined, options.room, SETUP_TIMEOUT_MS, die, protocol);

// Pacing by the clock: each tick sends every message that is due, so a late tick catches up rather
// than lowering the rate, and each message carries the time it was actually written. Senders are
// spread over the period (with two at 500/s each, one sends at 0, 2, 4 ms and the other at 1, 3, 5),
// so the room gets one message every millisecond, not two at once every two.
const perSender = options.rate / options.senders;
const sentBy = new Array<number>(options.senders).fill(0);
const runId = process.pid.toString(36);
let measured = 0;
let lastTick = performance.now();
let worstTickGapMs = 0;
const t0 = performance.now();
measureFrom = t0 + options.warmupMs;
measureTo = measureFrom + options.durationMs;
const send = (s: number) => {
  const seq = sentBy[s]!++;
  const sentAt = performance.now();
  if (sentAt >= measureFrom && sentAt < measureTo) {
    tracks.set(`${s}:${seq}`, { instance: instanceOf(s), same: [], other: [] });
    measured++;
  }
  const text = JSON.stringify({ sentAt, sender: s, seq });
  clients[s]!.sendText(wire.message(options.room, text, `${runId}-${s}-${seq}`));
};
let finishSending!: () => void;
const sendingDone = new Promise<void>((resolve) => (finishSending = resolve));
const ticker = setInterval(() => {
  const now = performance.now();
  if (now >= measureFrom) worstTickGapMs = Math.max(worstTickGapMs, now - lastTick);
  lastTick = now;
  if (now >= measureTo) {
    clearInterval(ticker);
    finishSending();
    return;
  }
  const periods = ((now - t0) * perSender) / 1000;
  for (let s = 0; s < options.senders; s++) {
    const due = Math.floor(periods - s / options.senders) + 1;
    while (sentBy[s]! < due) send(s);
  }
}, 1);

await Bun.sleep(options.warmupMs);
const start = {
  at: performance.now(),
  load: processCpuSeconds(),
  cpu: options.processes.map((p) => cpuSeconds(p.pid)),
};
await sendingDone;
const end = { at: performance.now(), load: processCpuSeconds(), cpu: options.processes.map((p) => cpuSeconds(p.pid)) };

const receiversPerMessage = options.clients - 1;
const expected = measured * receiversPerMessage;
const received = () => {
  let n = 0;
  for (const t of tracks.values()) n += t.same.length + t.other.length;
  return n;
};
const drainUntil = performance.now() + options.drainMs;
while (received() < expected && performance.now() < drainUntil) await Bun.sleep(20);
stopping = true;

const refused = clients.reduce((n, c) => n + c.errors, 0);
if (refused > 0)
  die(`the server answered ${refused} messages with an error, first: ${clients.find((c) => c.firstError)?.firstError}`);

const median = (values: number[]) => percentiles(values).p50;

const same: number[] = [];
const other: number[] = [];
const hop: number[] = [];
const sameSize = (instance: number) => clients.filter((_, i) => instanceOf(i) === instance).length - 1;
let missingSame = 0;
let messagesIncomplete = 0;
for (const track of tracks.values()) {
  const lackSame = sameSize(track.instance) - track.same.length;
  missingSame += lackSame;
  if (lackSame > 0 || track.same.length + track.other.length < receiversPerMessage) messagesIncomplete++;
  same.push(...track.same);
  other.push(...track.other);
  if (track.same.length > 0 && track.other.length > 0) hop.push(median(track.other) - median(track.same));
}
const seconds = (end.at - start.at) / 1000;
const result: HopLatencyResult = {
  messages: measured,
  messagesPerSecond: measured / seconds,
  expected,
  missing: expected - same.length - other.length,
  missingSame,
  messagesIncomplete,
  same: percentiles(same),
  other: percentiles(other),
  hop: percentiles(hop),
  worstTickGapMs,
  loadCpu: (end.load - start.load) / seconds,
  cpu: Object.fromEntries(options.processes.map((p, k) => [p.name, (end.cpu[k]! - start.cpu[k]!) / seconds])),
};
process.stdout.write(`${JSON.stringify(result)}\n`);
for (const client of clients) client.close();
process.exit(0);
