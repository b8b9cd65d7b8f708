// Redis pub/sub alone (a child process of bench/redis.ts): the floor under the chat's backplane hop.
// One ioredis connection publishes to one channel at a steady rate, paced as hop-latency.ts paces
// its senders; another, subscribed, takes the time from publish to receipt. Payloads are padded to
// the size of a backplane envelope carrying a room message. Same clock for both: one process.
// Prints one JSON line with the result on stdout.
//
// Usage: bun bench/load/pubsub-latency.ts '<json options>'

import Redis from "ioredis";
import { type Percentiles, percentiles } from "../lib/stats";

export interface PubSubLatencyOptions {
  url: string;
  channel: string;
  rate: number;
  warmupMs: number;
  durationMs: number;
  payloadBytes: number;
}

export interface PubSubLatencyResult {
  messages: number;
  latency: Percentiles;
  worstTickGapMs: number;
}

const options = JSON.parse(process.argv[2] ?? "{}") as PubSubLatencyOptions;

const publisher = new Redis(options.url, { enableOfflineQueue: true, lazyConnect: false });
const subscriber = new Redis(options.url, { enableOfflineQueue: true, lazyConnect: false });
await subscriber.subscribe(options.channel);

const latencies: number[] = [];
let measureFrom = Infinity;
let measureTo = Infinity;
let received = 0;
subscriber.on("message", (_channel: string, payload: string) => {
  const now = performance.now();
  const sentAt = Number(payload.slice(0, payload.indexOf(" ")));
  received++;
  if (sentAt >= measureFrom && sentAt < measureTo) latencies.push(now - sentAt);
});

const padding = "x".repeat(Math.max(0, options.payloadBytes - 20));
const t0 = performance.now();
measureFrom = t0 + options.warmupMs;
measureTo = measureFrom + options.durationMs;
let sent = 0;
let measured = 0;
let lastTick = t0;
let worstTickGapMs = 0;
await new Promise<void>((resolve) => {
  const ticker = setInterval(() => {
    const now = performance.now();
    if (now >= measureFrom) worstTickGapMs = Math.max(worstTickGapMs, now - lastTick);
    lastTick = now;
    if (now >= measureTo) {
      clearInterval(ticker);
      resolve();
      return;
    }
    const due = Math.floor(((now - t0) * options.rate) / 1000) + 1;
    while (sent < due) {
      const sentAt = performance.now();
      if (sentAt >= measureFrom) measured++;
      void publisher.publish(options.channel, `${sentAt.toFixed(4)} ${padding}`);
      sent++;
    }
  }, 1);
});
const deadline = performance.now() + 5000;
while (received < sent && performance.now() < deadline) await Bun.sleep(20);

const result: PubSubLatencyResult = {
  messages: measured,
  latency: percentiles(latencies),
  worstTickGapMs,
};
process.stdout.write(`${JSON.stringify(result)}\n`);
publisher.disconnect();
subscriber.disconnect();
process.exit(0);
