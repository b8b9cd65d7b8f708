// A well-behaved pair, run as its own process so that its measurements are not slowed by the
// process generating the abuse: alice sends every 25 ms into a room, bob records how long each
// message takes to arrive. Runs until a line arrives on stdin (or SIGTERM), then prints one JSON
// line and exits. The stop comes through stdin because a SIGTERM sent to this busy child was seen
// lost: the signal was caught natively but the listener never ran, and the pair chatted on.
export {};

const [base] = process.argv.slice(2);
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
const timer = setInterval(() => {
  const clientMsgId = `c${++seq}`;
  sentAt.set(clientMsgId, performance.now());
  alice.send(JSON.stringify({ type: "message", room: "calm", text: `steady ${seq}`, clientMsgId }));
}, 25);
console.log(JSON.stringify({ ready: true }));

await new Promise<void>((resolve) => {
  process.once("SIGTERM", () => resolve());
  process.stdin.once("data", () => resolve());
});
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
