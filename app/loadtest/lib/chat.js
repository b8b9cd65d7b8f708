// One chat session over k6/websockets: connect to /ws/chat/<id>, wait for connection_established,
// join the VU's room, send messages at MSG_RATE with {sentAt} in the text, record the latency of
// every room message received, and close after SESSION (or when the scenario ends).
import { sleep } from "k6";
import exec from "k6/execution";
import { clearInterval, clearTimeout, setInterval, setTimeout } from "k6/timers";
import { WebSocket } from "k6/websockets";
import {
  errorFrames,
  errors,
  messagesReceived,
  messagesSent,
  msgLatency,
  sessionSuccess,
  unexpectedCloses,
} from "./metrics.js";

/** Time allowed from the start of the handshake to the join's message_response. */
const JOIN_DEADLINE_MS = 10_000;
/** A message not acknowledged within this time counts as a failed operation. */
const ACK_DEADLINE_MS = 5_000;
/** Pause after a failed session so a dead server is not hammered in a tight loop. */
const RETRY_PAUSE_MS = 1_000;
/**
 * At its planned end a session stops sending and closes this much later. The room's other members
 * end at the same moment: a message sent just before it still reaches them, so every member
 * counts every message of the session (what the smoke test's receipts are checked against).
 */
const SETTLE_MS = 300;
/** A session is not started this close to the end of its scenario (see `sessionUntil`). */
const MIN_SESSION_MS = 1_000;

/** Index of this VU in the whole test, from 0; stable across iterations. */
export function vuIndex() {
  return exec.vu.idInTest - 1;
}

export function roomFor(config, index) {
  return `${config.roomPrefix}-${Math.floor(index / config.roomSize)}`;
}

/** Unique per VU and iteration, within the server's 8-64 characters of [A-Za-z0-9_-]. */
export function connectionIdFor(index, iteration) {
  const nonce = Math.floor(Math.random() * 0x100000000).toString(36);
  return `k6-${index}-${iteration}-${nonce}`;
}

export function sessionUrl(config, index, connectionId, userId) {
  const origin = config.wsOrigins[index % config.wsOrigins.length];
  let url = `${origin}/ws/chat/${connectionId}?user=${encodeURIComponent(userId)}`;
  if (config.token) url += `&token=${encodeURIComponent(config.token)}`;
  if (config.batch) url += "&batch=1";
  return url;
}

/**
 * The server frames of one WebSocket message: a batched connection gets several joined by `\n`
 * (JSON text never holds a raw line feed); a plain one gets one. Lines that are not frames are skipped.
 */
export function parseFrames(data) {
  if (typeof data !== "string") return [];
  const out = [];
  for (const line of data.split("\n")) {
    const frame = parseFrame(line);
    if (frame !== null) out.push(frame);
  }
  return out;
}

/** Parses a server frame; a frame that is not a JSON object is returned as null. */
export function parseFrame(data) {
  if (typeof data !== "string") return null;
  try {
    const frame = JSON.parse(data);
    return frame !== null && typeof frame === "object" && typeof frame.type === "string" ? frame : null;
  } catch {
    return null;
  }
}

/** The text of a load-test message: small JSON carrying the send time, well under MAX_TEXT_LENGTH. */
export function messageText(seq) {
  return JSON.stringify({ sentAt: Date.now(), seq });
}

/** Milliseconds since the message's `sentAt`, or null when the text was not written by these scripts. */
export function latencyOf(frame, now) {
  if (typeof frame.text !== "string" || frame.text.charCodeAt(0) !== 123 /* { */) return null;
  try {
    const body = JSON.parse(frame.text);
    return typeof body.sentAt === "number" ? now - body.sentAt : null;
  } catch {
    return null;
  }
}

/**
 * One session for a VU's iteration, unless its scenario ends within MIN_SESSION_MS: then the VU waits
 * for the end instead. A session started then would outlast the other members' sessions, which end
 * with the scenario, and send into a room nobody else is in any more.
 */
export function sessionUntil(config, endsAt) {
  const left = endsAt - Date.now();
  if (left < MIN_SESSION_MS) {
    sleep(Math.max(0.1, left / 1000));
    return;
  }
  chatSession(config, endsAt);
}

/**
 * Runs one session; the VU's iteration ends when the socket is closed and its timers are done.
 * `endsAt` (epoch ms) closes the session early so it finishes with its scenario. `index` numbers the
 * user (its room and user id); a VU that holds several sockets passes one per socket.
 */
export function chatSession(config, endsAt, index = vuIndex()) {
  const connectionId = connectionIdFor(index, exec.vu.iterationInScenario);
  const userId = `k6-user-${index}`;
  const room = roomFor(config, index);
  const tags = { room_size: String(config.roomSize) };
  const pending = new Map();
  let seq = 0;
  let opened = false;
  let joined = false;
  let closing = false;
  let finished = false;
  let sender = null;
  let sessionTimer = null;

  const ws = new WebSocket(sessionUrl(config, index, connectionId, userId));

  const joinTimer = setTimeout(() => {
    if (!joined) {
      errors.add(true, { op: "join" });
      finish(false);
    }
  }, JOIN_DEADLINE_MS);

  function send(frame) {
    ws.send(JSON.stringify(frame));
  }

  function sendMessage() {
    seq += 1;
    const ref = `m${seq}`;
    pending.set(ref, Date.now());
    send({ type: "message", room, text: messageText(seq), clientMsgId: `${connectionId}-${seq}`, ref });
    messagesSent.add(1, tags);
    // Acks older than the deadline count as failures once, here, rather than with a timer each.
    const now = Date.now();
    for (const [old, at] of pending) {
      if (now - at <= ACK_DEADLINE_MS) break;
      pending.delete(old);
      errors.add(true, { op: "message" });
    }
  }

  function startSending() {
    const periodMs = 1000 / config.msgRate;
    const remaining = Math.max(1000, endsAt - Date.now());
    sessionTimer = setTimeout(() => finish(true), Math.min(config.sessionMs, remaining));
    // A random first delay spreads the senders of a room over the period instead of in step.
    sender = setTimeout(() => {
      sendMessage();
      sender = setInterval(sendMessage, periodMs);
    }, Math.random() * periodMs);
  }

  /** Closes the session once; `ok` is whether the client, not the server, ended it after a join. */
  function finish(ok) {
    if (finished) return;
    finished = true;
    clearTimeout(joinTimer);
    if (sessionTimer !== null) clearTimeout(sessionTimer);
    if (sender !== null) {
      clearTimeout(sender);
      clearInterval(sender);
    }
    sessionSuccess.add(ok && joined, tags);
    if (!closing) {
      closing = true;
      if (ok) setTimeout(() => ws.close(), SETTLE_MS);
      else ws.close();
    }
    if (!ok) setTimeout(() => {}, RETRY_PAUSE_MS);
  }

  ws.onopen = () => {
    opened = true;
  };

  ws.onmessage = (event) => {
    for (const frame of parseFrames(event.data)) onFrame(frame);
  };

  function onFrame(frame) {
    switch (frame.type) {
      case "connection_established":
        send({ type: "join", room, ref: "join" });
        return;
      case "message_response":
        if (frame.ref === "join") {
          if (!joined && !finished) {
            joined = true;
            errors.add(false, { op: "join" });
            startSending();
          }
        } else if (pending.delete(frame.ref)) {
          errors.add(false, { op: "message" });
        }
        return;
      case "message": {
        const latency = latencyOf(frame, Date.now());
        if (latency !== null) {
          msgLatency.add(latency, tags);
          messagesReceived.add(1, tags);
        }
        return;
      }
      case "error":
        errorFrames.add(1, { code: String(frame.code) });
        errors.add(true, { op: frame.ref === "join" ? "join" : "message" });
        if (frame.ref === "join") finish(false);
        else if (typeof frame.ref === "string") pending.delete(frame.ref);
        return;
      default:
        return;
    }
  }

  ws.onerror = () => {
    if (!finished && !closing) errors.add(true, { op: "connect" });
  };

  ws.onclose = () => {
    if (!closing) {
      closing = true;
      // Where the session was when it ended tells a refused upgrade from a dropped connection.
      unexpectedCloses.add(1, { phase: joined ? "chatting" : opened ? "joining" : "connecting" });
      finish(false);
    }
  };
}
