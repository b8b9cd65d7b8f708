// What crosses Redis pub/sub between instances, in the two versions a deployment may hold at once.
//
// v1 (every release so far reads it): one JSON object per frame,
//   {"origin":..,"topic":..,"frame":..,"epoch":..,"offset":..,"sentAt":..}, or with "message" (a
//   stored room message, the receiver builds its frame) in place of "frame".
// v2: a one-line header, then one or more server frames, each on its own line:
//   2|<flags>|<sentAt>|<epoch>|<offset>|<origin>\n<frame>[\n<frame>...]
//   flags: "s" when the frames are room messages published by the history store (every instance,
//   its origin included, delivers them); empty for a frame one instance sends to the others.
//   epoch and offset are empty for frames without them; with several frames they are consecutive
//   messages of one room and `offset` is the first one's. The topic is the channel's (a receiver
//   knows which topic it subscribed each channel for), so the envelope does not repeat it.
// A frame is JSON and JSON holds no raw line break, and an instance id holds no `|` or line break
// (config), so the header and the frames split without escaping. A v2 envelope is read with a few
// indexOf calls and one split: the frames go to the sockets as they are, never parsed or rebuilt.

import type { RoomMessage } from "../protocol/server-frames";

/** The envelope versions this release reads. */
export const READ_VERSIONS = [1, 2] as const;
export type EnvelopeVersion = (typeof READ_VERSIONS)[number];

/** An envelope as received: one or more frames of one topic from one origin. */
export interface DecodedEnvelope {
  origin: string;
  /** Published by the history store in the same step as the write (delivered by its origin too). */
  stored: boolean;
  sentAt: number;
  epoch?: string;
  /** Offset of the first frame; the others follow it one by one. */
  offset?: number;
  /** Server frames, ready to send; undefined when `message` is (a v1 stored message). */
  frames?: string[];
  /** A v1 stored message: the receiver builds its `message` frame. */
  message?: RoomMessage;
}

export interface OutgoingEnvelope {
  origin: string;
  topic: string;
  sentAt: number;
  frame: string;
  epoch?: string;
  offset?: number;
}

/** Encodes one frame sent by an instance to the others. */
export function encodeEnvelope(version: EnvelopeVersion, e: OutgoingEnvelope): string {
  if (version === 1)
    return JSON.stringify({
      origin: e.origin,
      topic: e.topic,
      frame: e.frame,
      epoch: e.epoch,
      offset: e.offset,
      sentAt: e.sentAt,
    });
  return `2||${e.sentAt}|${e.epoch ?? ""}|${e.offset ?? ""}|${e.origin}\n${e.frame}`;
}

/** Decodes an envelope of a version this release reads; undefined for anything else. */
export function decodeEnvelope(payload: string): DecodedEnvelope | undefined {
  if (payload.charCodeAt(0) === 123 /* { */) return decodeV1(payload);
  if (!payload.startsWith("2|")) return undefined;
  const newline = payload.indexOf("\n");
  if (newline < 0) return undefined;
  const flagsEnd = payload.indexOf("|", 2);
  const sentAtEnd = payload.indexOf("|", flagsEnd + 1);
  const epochEnd = payload.indexOf("|", sentAtEnd + 1);
  const offsetEnd = payload.indexOf("|", epochEnd + 1);
  if (flagsEnd < 0 || sentAtEnd < 0 || epochEnd < 0 || offsetEnd < 0 || offsetEnd > newline) return undefined;
  const sentAt = Number(payload.slice(flagsEnd + 1, sentAtEnd));
  const epoch = payload.slice(sentAtEnd + 1, epochEnd);
  const offset = payload.slice(epochEnd + 1, offsetEnd);
  if (!Number.isFinite(sentAt) || (offset !== "" && !Number.isInteger(Number(offset)))) return undefined;
  const body = payload.slice(newline + 1);
  return {
    origin: payload.slice(offsetEnd + 1, newline),
    stored: payload.slice(2, flagsEnd) === "s",
    sentAt,
    epoch: epoch === "" ? undefined : epoch,
    offset: offset === "" ? undefined : Number(offset),
    frames: body.indexOf("\n") < 0 ? [body] : body.split("\n"),
  };
}

function decodeV1(payload: string): DecodedEnvelope | undefined {
  let e: {
    origin?: unknown;
    frame?: unknown;
    message?: DecodedEnvelope["message"];
    epoch?: string;
    offset?: number;
    sentAt?: unknown;
  };
  try {
    e = JSON.parse(payload);
  } catch {
    return undefined;
  }
  if (typeof e.origin !== "string" || typeof e.sentAt !== "number") return undefined;
  if (typeof e.frame !== "string" && (typeof e.message !== "object" || e.message === null)) return undefined;
  return {
    origin: e.origin,
    stored: e.message !== undefined,
    sentAt: e.sentAt,
    epoch: e.epoch,
    offset: e.offset,
    frames: typeof e.frame === "string" ? [e.frame] : undefined,
    message: typeof e.frame === "string" ? undefined : e.message,
  };
}

/**
 * The publishing part of the history store's append script (src/history/redis.ts), in Lua: it
 * needs the script's `publish` command name, `origin`, `sentAt` and `version` ('1' or '2') in scope.
 * `queue_publish` is called per stored message, in offset order; `flush_publish` once after the
 * batch: v1 publishes one envelope per message, v2 one per channel (room) with all its messages of
 * the batch, which are consecutive offsets of one epoch (a script runs alone, and a room's epoch is
 * settled once per call).
 */
export const LUA_PUBLISH = `
local pub_order, pub_frames = {}, {}
local function queue_publish(channel, topic, epoch, offset, stored)
  if version ~= '2' then
    redis.call(publish, channel, '{"origin":"' .. origin .. '","topic":"' .. topic .. '","epoch":"' .. epoch ..
      '","offset":' .. offset .. ',"sentAt":' .. sentAt .. ',"message":' .. stored .. '}')
    return
  end
  local frames = pub_frames[channel]
  if not frames then
    frames = {'2|s|' .. sentAt .. '|' .. epoch .. '|' .. offset .. '|' .. origin}
    pub_frames[channel] = frames
    pub_order[#pub_order + 1] = channel
  end
  frames[#frames + 1] = '{"type":"message",' .. string.sub(stored, 2)
end
local function flush_publish()
  for _, channel in ipairs(pub_order) do
    redis.call(publish, channel, table.concat(pub_frames[channel], '\\n'))
  end
end
`;
