// Builders for every server frame of protocol v1. Each returns the JSON text ready to send, so a
// frame fanned out to many sockets is serialised once.

import { type ErrorCode, PROTOCOL_VERSION, TEMPORARY_ERRORS } from "./codes";

/** A room message as stored in history and delivered in `message` frames. */
export interface RoomMessage {
  room: string;
  id: string;
  offset: number;
  from: string;
  text: string;
  ts: number;
  clientMsgId: string;
}

export interface DirectMessage {
  id: string;
  from: string;
  to: string;
  text: string;
  ts: number;
  clientMsgId: string;
}

export interface ConnectionEstablished {
  connectionId: string;
  userId: string;
  instanceId: string;
  color: string;
  version: string;
  heartbeatIntervalMs: number;
  /** The connection's frame limit (FRAME_RATE, FRAME_BURST): a client paces its resends under it. */
  frameRate: number;
  frameBurst: number;
  resumed: boolean;
  rooms: string[];
  /** Only for a client that asked for batched frames: how many frames and bytes one batch holds at most. */
  batch?: { maxFrames: number; maxBytes: number };
}

const json = JSON.stringify;

export const frames = {
  connectionEstablished: (f: ConnectionEstablished) =>
    json({ type: "connection_established", ...f, protocol: PROTOCOL_VERSION }),

  heartbeat: (ts: number) => `{"type":"heartbeat","ts":${ts}}`,

  pong: (ts: number, ref?: string) => json({ type: "pong", ref, ts }),

  response: (forType: string, ref: string | undefined, result: Record<string, unknown> = {}) =>
    json({ type: "message_response", ref, ok: true, for: forType, ...result }),

  /**
   * The answer to a stored room message: the same text as `response("message", ref, {room, id,
   * offset, ts})`, built without copying a result object (one per message).
   */
  messageStored: (ref: string | undefined, room: string, id: string, offset: number, ts: number) =>
    json({ type: "message_response", ref, ok: true, for: "message", room, id, offset, ts }),

  error: (code: ErrorCode, message: string, ref?: string) =>
    json({ type: "error", code, message, ref, temporary: TEMPORARY_ERRORS.has(code) }),

  goodbye: (reason: string, reconnect: boolean, retryAfterMs: number) =>
    json({ type: "goodbye", reason, reconnect, retryAfterMs }),

  message: (m: RoomMessage) =>
    json({
      type: "message",
      room: m.room,
      id: m.id,
      offset: m.offset,
      from: m.from,
      text: m.text,
      ts: m.ts,
      clientMsgId: m.clientMsgId,
    }),

  /** The room's history started anew: later `message` offsets count in `epoch`, after `offset`. */
  epoch: (room: string, epoch: string, offset: number) => json({ type: "epoch", room, epoch, offset }),

  /** A direct message with its offset in the receiving user's inbox (of `epoch`). */
  direct: (m: DirectMessage & { offset: number }, epoch: string) =>
    json({
      type: "direct",
      id: m.id,
      from: m.from,
      to: m.to,
      text: m.text,
      ts: m.ts,
      clientMsgId: m.clientMsgId,
      offset: m.offset,
      epoch,
    }),

  typing: (room: string, from: string, active: boolean) => json({ type: "typing", room, from, active }),

  read: (room: string, from: string, offset: number) => json({ type: "read", room, from, offset }),

  presence: (room: string, members: string[], ref?: string) => json({ type: "presence", ref, room, members }),

  presenceDiff: (room: string, joins: string[], leaves: string[]) =>
    json({ type: "presence_diff", room, joins, leaves }),

  history: (room: string, messages: RoomMessage[], hasMore: boolean, ref?: string) =>
    json({ type: "history", ref, room, messages, hasMore }),

  system: (text: string, ts: number) => json({ type: "system", text, ts }),
};
