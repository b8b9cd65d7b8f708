// Scenario settings from the environment, so one script runs small in CI and full size in a test:
//   BASE_URL   http(s) origin of the server, e.g. http://127.0.0.1:3001 (WS_URL is derived from it)
//   WS_URL     ws(s) origin, e.g. ws://127.0.0.1:3001
//   WS_URLS    comma list of ws(s) origins; VU n uses entry n mod length (several instances)
//   VUS        virtual users (each holds one WebSocket)
//   DURATION   how long the scenario's main stage lasts (k6 duration: 30s, 2m, ...)
//   ROOM_SIZE  members per room; VU index i joins room load-<floor(i / ROOM_SIZE)>
//   MSG_RATE   messages each user sends per second (fractions allowed: 0.2 = one every 5 s)
//   SESSION    how long one connection stays open before the VU closes it and reconnects
//   TOKEN      passed as ?token= on the WebSocket URL when set
//   ROOM_PREFIX prefix of room names (default "load"), to keep runs apart
//   BATCH      1 (default): ask for batched frames (?batch=1), as the client library does; 0: plain frames

/** Reads a variable; the default applies when it is unset or empty. */
export function env(name, fallback) {
  const value = __ENV[name];
  return value === undefined || value === "" ? fallback : value;
}

export function positiveInt(name, fallback) {
  const raw = env(name, String(fallback));
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`invalid ${name}=${JSON.stringify(raw)}: expected a positive integer`);
  return n;
}

export function positiveNumber(name, fallback) {
  const raw = env(name, String(fallback));
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0)
    throw new Error(`invalid ${name}=${JSON.stringify(raw)}: expected a positive number`);
  return n;
}

/** Reads a 0/1 variable. */
export function flag(name, fallback) {
  const raw = env(name, fallback ? "1" : "0");
  if (raw !== "0" && raw !== "1") throw new Error(`invalid ${name}=${JSON.stringify(raw)}: expected 0 or 1`);
  return raw === "1";
}

/** Reads a duration variable such as DURATION=2m, in milliseconds. */
export function durationMs(name, fallback) {
  return parseDuration(env(name, fallback), name);
}

/** Parses a k6 duration such as "30s", "2m", "1m30s", "500ms" into milliseconds. */
export function parseDuration(raw, name = "duration") {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  const units = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let consumed = 0;
  let match;
  while ((match = re.exec(raw)) !== null) {
    total += Number(match[1]) * units[match[2]];
    consumed += match[0].length;
  }
  if (consumed !== raw.length || total <= 0)
    throw new Error(`invalid ${name}=${JSON.stringify(raw)}: expected a duration such as 30s or 2m`);
  return total;
}

export function seconds(ms) {
  return `${Math.max(1, Math.ceil(ms / 1000))}s`;
}

function wsOrigins() {
  const list = env("WS_URLS", "");
  if (list)
    return list
      .split(",")
      .map((s) => s.trim().replace(/\/+$/, ""))
      .filter(Boolean);
  const ws = env("WS_URL", "");
  if (ws) return [ws.replace(/\/+$/, "")];
  const base = env("BASE_URL", "http://127.0.0.1:3001").replace(/\/+$/, "");
  return [base.replace(/^http/, "ws")];
}

/** The settings every scenario shares; `defaults` gives a scenario its own sizes. */
export function loadConfig(defaults) {
  const durationText = env("DURATION", defaults.duration);
  const config = {
    wsOrigins: wsOrigins(),
    vus: positiveInt("VUS", defaults.vus),
    duration: durationText,
    durationMs: durationMs("DURATION", defaults.duration),
    roomSize: positiveInt("ROOM_SIZE", defaults.roomSize ?? 10),
    msgRate: positiveNumber("MSG_RATE", defaults.msgRate ?? 1),
    sessionMs: durationMs("SESSION", defaults.session ?? "60s"),
    token: env("TOKEN", ""),
    roomPrefix: env("ROOM_PREFIX", "load"),
    batch: flag("BATCH", true),
  };
  // The server allows FRAME_RATE (default 20) frames per second per connection; stay under it.
  if (config.msgRate > 15)
    throw new Error(`invalid MSG_RATE=${config.msgRate}: at most 15 messages per second per user`);
  return Object.freeze(config);
}
