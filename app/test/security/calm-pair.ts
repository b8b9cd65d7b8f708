// A well-behaved pair, run as its own process so that its measurements are not slowed by the
// process generating the abuse: alice sends every 25 ms into a room, bob records how long each
// message takes to arrive. Runs until told to stop, then prints one JSON line and exits.
// The stop is a file appearing at the path given as the second argument, checked by the same timer
// that sends: a SIGTERM and a line on stdin were both seen lost by this child on a loaded machine.
// A ceiling on the run (third argument, seconds) ends it anyway, so the pair never chats on alone.
import { existsSync } from "node:fs";

const [base, stopFile, maxSeconds = "180"] = process.argv.slice(2);
if (!base || !stopFile) throw new Error("usage: calm-pair.ts <ws-base> <stop-file> [max-seconds]");
const runUntil = Date.now() + Number(maxSeconds) * 1000;
const id = () => `calm-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;

function open(user: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base}/ws/chat/${id()}?user=${user}`);
    ws.onerror = () => reject(new Error(`${user} could not connect`));
    ws.onmessage = (e) => {
      if (JSON.parse(String(e.data)).type !== "connection_established") return;
      ws.send(JSON.stringify({ type: "join", room: "calm", ref: "j" }));
    };
    const onJoined = (e: MessageEvent) => {
      const f = JSON.parse(String(e.data));
      if (f.ref === "j") {
        ws.removeEventListener("message", onJoined);
        resolve(ws);
      }
    };
    ws.addEventListener("message", onJoined);
  });
}

const alice = await open("alice");
const bob = await open("bob");
const sentAt = new Map<string, number>();
const latencies: number[] = [];
const received = new Set<string>();
let duplicates = 0;
bob.addEventListener("message", (e) => {
  const f = JSON.parse(String(e.data));
  if (f.type !== "message" || f.from !== "alice") return;
  if (received.has(f.clientMsgId)) duplicates++;
  received.add(f.clientMsgId);
  latencies.push(performance.now() - sentAt.get(f.clientMsgId)!);
});
let seq = 0;
let stop: () => void = () => {};
const stopped = new Promise<void>((resolve) => (stop = resolve));
const timer = setInterval(() => {
  if (existsSync(stopFile) || Date.now() > runUntil) return stop();
  const clientMsgId = `c${++seq}`;
  sentAt.set(clientMsgId, performance.now());
  alice.send(JSON.stringify({ type: "message", room: "calm", text: `steady ${seq}`, clientMsgId }));
}, 25);
console.log(JSON.stringify({ ready: true }));

await stopped;
clearInterval(timer);
const deadline = Date.now() + 3000;
while (received.size < seq && Date.now() < deadline) await Bun.sleep(10);
const sorted = [...latencies].sort((a, b) => a - b);
const pct = (p: number) =>
  +(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN).toFixed(2);
console.log(
  JSON.stringify({ sent: seq, received: received.size, duplicates, p50: pct(50), p99: pct(99), max: pct(100) }),
);
process.exit(0);
