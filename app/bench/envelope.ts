// What an instance spends on each backplane envelope it receives, v1 against v2: from the payload
// ioredis hands over to the `message` frames the sequencer gets (v1: JSON.parse of the envelope,
// then the frame built with frames.message; v2: the header read and the frames split out). Payloads
// are flat strings decoded from bytes, as ioredis hands them over. CPU only; one process.
//
// Usage: bun run bench/envelope.ts [envelopes=200000]

import { decodeEnvelope } from "../src/backplane/envelope";
import { frames } from "../src/protocol/server-frames";

const count = Number(process.argv[2] ?? 200_000);
const message = (offset: number) => ({
  room: "hop",
  id: "0192b7c4-6f1e-7c3a-9d2b-5e8f1a2b3c4d",
  offset,
  from: "bench-user-007",
  text: '{"sentAt":123456.789,"sender":1,"seq":4242}',
  ts: 1_764_000_000_000,
  clientMsgId: "abc123-1-4242",
});
const stored = (offset: number) => {
  const { offset: _, ...draft } = message(offset);
  return `{"offset":${offset},${JSON.stringify(draft).slice(1)}`;
};
const v1 = (offset: number) =>
  `{"origin":"bench-chat-a","topic":"room:hop","epoch":"0192b7c4-0000-7000-8000-000000000000","offset":${offset},"sentAt":1764000000000,"message":${stored(offset)}}`;
const v2 = (offset: number, n: number) =>
  `2|s|1764000000000|0192b7c4-0000-7000-8000-000000000000|${offset}|bench-chat-a\n${Array.from(
    { length: n },
    (_, k) => `{"type":"message",${stored(offset + k).slice(1)}`,
  ).join("\n")}`;

let sink = 0;
function measure(label: string, payloads: string[], perPayload: number, receive: (payload: string) => void) {
  for (let i = 0; i < Math.min(20_000, payloads.length); i++) receive(payloads[i]!);
  Bun.gc(true);
  const t = performance.now();
  for (const payload of payloads) receive(payload);
  const ns = ((performance.now() - t) * 1e6) / (payloads.length * perPayload);
  console.log(`${label.padEnd(48)} ${ns.toFixed(0).padStart(5)} ns per message`);
}

/** A flat string, as decoded from a socket's bytes (a string built by concatenation is a rope). */
const flat = (text: string) => Buffer.from(text).toString();
const v1Payloads = Array.from({ length: count }, (_, i) => flat(v1(i + 1)));
measure("v1: JSON.parse + frames.message", v1Payloads, 1, (payload) => {
  const envelope = decodeEnvelope(payload)!;
  sink += frames.message(envelope.message!).length;
});
for (const n of [1, 4, 16]) {
  const payloads = Array.from({ length: count / n }, (_, i) => flat(v2(i * n + 1, n)));
  measure(`v2: header + split, ${n} message(s) per envelope`, payloads, n, (payload) => {
    for (const frame of decodeEnvelope(payload)!.frames!) sink += frame.length;
  });
}
if (sink === 0) console.log("nothing measured");
