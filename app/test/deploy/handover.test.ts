// Blue to green with 200 clients chatting in 20 rooms of 10 through the front door for the whole
// deploy, all behind one address (as behind a NAT, a corporate proxy or a mobile carrier): every
// message sent reaches every member of its room exactly once, every client ends on green, no
// upgrade is refused, and the script prints "done" only once the last client is back. The real
// script with its default drain settings, real binaries, real Redis, real k6; the Traefik double
// in front applies traefik/dynamic as Traefik does, ws-ratelimit and the reload throttle included.
// The colors limit upgrades per address as the front door does (CONNECT_RATE_PER_IP and
// CONNECT_BURST_PER_IP set to ws-ratelimit's values), as docs/operations.md says to size them.
// Prints the figures docs/performance.md records, and writes them to test-output/deploy-200.json.
// HANDOVER_CLIENTS and HANDOVER_SEND_INTERVAL_MS change the load for a measurement.
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { waitFor } from "../helpers/wait";
import { DeploySetup, REPO } from "./harness";
import { ResumingClient } from "./resuming-client";

const CLIENTS = Number(process.env.HANDOVER_CLIENTS ?? 200);
const ROOM_SIZE = 10;
/** Each client sends one message per interval (first one at a random point of it). */
const SEND_INTERVAL_MS = Number(process.env.HANDOVER_SEND_INTERVAL_MS ?? 200);
/** The production drain settings (docker-compose.yml). */
const DRAIN = { DRAIN_TIMEOUT: "30000", DRAIN_JITTER_MS: "5000" };
/** app/client's default maxQueue: a client that had more sends waiting would have dropped some. */
const CLIENT_MAX_QUEUE = 100;
const wsLimit = (
  parse(readFileSync(join(REPO, "traefik", "dynamic", "middlewares.yml"), "utf8")) as {
    http: { middlewares: Record<string, { rateLimit: { average: number; burst: number } }> };
  }
).http.middlewares["ws-ratelimit"]!.rateLimit;
const PER_IP = { CONNECT_RATE_PER_IP: String(wsLimit.average), CONNECT_BURST_PER_IP: String(wsLimit.burst) };

let setup: DeploySetup | undefined;
afterAll(async () => {
  await setup?.stop();
});

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;

test(`${CLIENTS} clients behind one address chat through a blue to green deploy: nothing lost or duplicated, none refused, all on green before "done"`, async () => {
  const s = (setup = await DeploySetup.create());
  await s.startColor("blue", { ...DRAIN, ...PER_IP });
  s.colorEnv("green", PER_IP);
  const run = Math.random().toString(36).slice(2, 8);
  const clients = Array.from(
    { length: CLIENTS },
    (_, i) =>
      new ResumingClient(s.front.wsUrl, `dc-${run}-${i}`, `user-${i}`, `room-${run}-${Math.floor(i / ROOM_SIZE)}`),
  );
  // Connected at 80% of what ws-ratelimit admits from one address, so that setting up is never refused.
  const started: Promise<void>[] = [];
  for (const c of clients) {
    started.push(c.start());
    await Bun.sleep(1000 / (wsLimit.average * 0.8));
  }
  await Promise.all(started);
  const refusedBefore = s.front.upgrades()[429] ?? 0;
  expect(clients.every((c) => c.color === "blue")).toBe(true);

  // Chat for the whole deploy, and a second on either side of it.
  const timers = clients.map((c) => {
    let interval: ReturnType<typeof setInterval> | undefined;
    const first = setTimeout(() => {
      c.send();
      interval = setInterval(() => c.send(), SEND_INTERVAL_MS);
    }, Math.random() * SEND_INTERVAL_MS);
    return () => {
      clearTimeout(first);
      clearInterval(interval);
    };
  });
  await Bun.sleep(1000);
  const running = s.start(["deploy", "green"], { ...DRAIN, GATE_SECONDS: "5", SMOKE_DURATION: "5s" });
  let doneAt = Number.NaN;
  const watchDone = setInterval(() => {
    if (Number.isNaN(doneAt) && /^deploy to green done in /m.test(running.output())) doneAt = Date.now();
  }, 5);
  const deploy = await running.done;
  clearInterval(watchDone);
  if (Number.isNaN(doneAt) && /^deploy to green done in /m.test(deploy.stdout)) doneAt = Date.now();
  const switchedAt = statSync(join(s.dynamicDir, "active-color.yml")).ctimeMs;
  await Bun.sleep(1000);
  for (const stop of timers) stop();
  if (deploy.code !== 0) throw new Error(`deploy failed:\n${deploy.stdout}\n${deploy.stderr}`);

  // Every send acknowledged, then every acknowledged message delivered to every member of its room.
  // Clients still out when the script ends get a minute to come back; the figures say how long it took.
  await waitFor(() => clients.every((c) => c.unacknowledged === 0), {
    timeoutMs: 60_000,
    what: "every send to be acknowledged",
  }).catch(() => {});
  const byRoom = new Map<string, Set<string>>();
  for (const c of clients) {
    const ids = byRoom.get(c.room) ?? new Set<string>();
    for (const id of c.acked.values()) ids.add(id);
    byRoom.set(c.room, ids);
  }
  const missing = (c: ResumingClient) => [...byRoom.get(c.room)!].filter((id) => !c.received.has(id)).length;
  await waitFor(() => clients.every((c) => missing(c) === 0), {
    timeoutMs: 10_000,
    what: "every message to reach every member",
  }).catch(() => {});

  const sent = clients.reduce((n, c) => n + c.acked.size, 0);
  const lost = clients.reduce((n, c) => n + missing(c), 0);
  // A client shows a message once per id (as app/client does). The same clientMsgId under two ids
  // would be a resend stored twice, which no client can hide: that is a duplicate.
  const duplicated = clients.reduce((n, c) => n + [...c.storedAs.values()].filter((ids) => ids.size > 1).length, 0);
  // Frames the server sent twice to one socket (same id): a client could hide them, but there are none.
  const wireDuplicates = clients.reduce((n, c) => n + [...c.received.values()].filter((k) => k > 1).length, 0);
  const handovers = clients.flatMap((c) => c.handovers);
  const lastBack = performance.timeOrigin + Math.max(...handovers.map((h) => h.resumedAt));
  const sorted = (f: (h: (typeof handovers)[number]) => number) => handovers.map(f).sort((a, b) => a - b);
  const spread = (values: number[]) => ({
    p50: Math.round(percentile(values, 50)),
    p99: Math.round(percentile(values, 99)),
    max: Math.round(values.at(-1) ?? NaN),
  });
  const figures = {
    clients: CLIENTS,
    rooms: CLIENTS / ROOM_SIZE,
    messagesSent: sent,
    deliveriesExpected: clients.reduce((n, c) => n + byRoom.get(c.room)!.size, 0),
    lost,
    duplicated,
    wireDuplicates,
    resendsAnsweredDuplicate: clients.reduce((n, c) => n + c.duplicateAnswers.length, 0),
    rejoinsNotRecovered: clients.reduce((n, c) => n + c.unrecovered.length, 0),
    errorFrames: clients.reduce((n, c) => n + c.errors.length, 0),
    failedConnects: clients.reduce((n, c) => n + c.closes.filter((k) => !k.startsWith("1012 ")).length, 0),
    handovers: handovers.length,
    unacknowledged: clients.reduce((n, c) => n + c.unacknowledged, 0),
    sessionsResumed: handovers.filter((h) => h.resumed).length,
    goodbyeToResumedMs: spread(sorted((h) => h.resumedAt - h.goodbyeAt)),
    goodbyeToClosedMs: spread(sorted((h) => h.closedAt - h.goodbyeAt)),
    closedToResumedMs: spread(sorted((h) => h.resumedAt - h.closedAt)),
    upgradesRefusedByFrontDoor: (s.front.upgrades()[429] ?? 0) - refusedBefore,
    maxClientQueue: Math.max(...clients.map((c) => c.maxPending)),
    clientsOverMaxQueue: clients.filter((c) => c.maxPending > CLIENT_MAX_QUEUE).length,
    doneAfterLastBackMs: Math.round(doneAt - lastBack),
    routePickupMs: Math.round(
      (s.front.history().find((h) => h.at >= switchedAt && h.active === "websocket-green")?.at ?? Number.NaN) -
        switchedAt,
    ),
    handoverLine: /^ +hand-over: .*$/m.exec(deploy.stdout)?.[0].trim(),
    deployMs: deploy.ms,
    drainStepSeconds: Number(/<== drain blue \((\d+)s\)/.exec(deploy.stdout)?.[1]),
    settings: { ...DRAIN, ...PER_IP, GATE_SECONDS: "5", SMOKE_VUS: "3", SMOKE_DURATION: "5s", SEND_INTERVAL_MS },
  };
  const out = join(import.meta.dir, "..", "..", "test-output");
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "deploy-200.json"), `${JSON.stringify(figures, null, 2)}\n`);
  console.log(`blue-green deploy with ${CLIENTS} clients: ${JSON.stringify(figures)}`);
  if (wireDuplicates > 0) {
    const sample = clients
      .flatMap((c) =>
        [...c.trace].filter(([, t]) => t.length > 1).map(([id, t]) => ({ client: c.connectionId, id, t })),
      )
      .slice(0, 3);
    console.log(`frames sent twice to one socket, first ${sample.length}: ${JSON.stringify(sample)}`);
  }

  expect(figures.unacknowledged).toBe(0);
  expect(lost).toBe(0);
  expect(duplicated).toBe(0);
  expect(wireDuplicates).toBe(0);
  expect(figures.rejoinsNotRecovered).toBe(0);
  expect(figures.failedConnects).toBe(0);
  expect(handovers.length).toBe(CLIENTS);
  expect(handovers.every((h) => h.from === "blue" && h.to === "green")).toBe(true);
  expect(clients.every((c) => c.color === "green")).toBe(true);
  expect(s.front.openSockets()).toMatchObject({ "websocket-blue": 0, "websocket-green": CLIENTS });
  expect(s.running("blue")).toBe(false);
  expect(figures.upgradesRefusedByFrontDoor).toBe(0);
  expect(figures.clientsOverMaxQueue).toBe(0);
  expect(figures.doneAfterLastBackMs).toBeGreaterThanOrEqual(0);
  for (const c of clients) c.stop();
}, 300_000);
