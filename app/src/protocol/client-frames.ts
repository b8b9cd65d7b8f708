// Client frames of protocol v1, declared with Elysia's `t` (TypeBox) and compiled once per type.
// Each frame type has its own compiled checker so an unknown type and a bad field get distinct codes
// and the check on the hot path is a single generated function call.

import { type TypeCheck, TypeCompiler } from "@sinclair/typebox/compiler";
import { type Static, type TSchema, t } from "elysia";
import { ErrorCode } from "./codes";

export const ROOM_PATTERN = "^[A-Za-z0-9_:.-]{1,64}$";
export const CONNECTION_ID_PATTERN = /^[A-Za-z0-9_-]{8,64}$/;

const Ref = t.Optional(t.String({ maxLength: 64 }));
const Room = t.String({ pattern: ROOM_PATTERN });
const UserId = t.String({ minLength: 1, maxLength: 64 });
const ClientMsgId = t.String({ minLength: 1, maxLength: 64 });
// The length limit is checked after the schema so that it can be reported as `text_too_long`.
const Text = t.String({ minLength: 1 });
// Elysia's t.Integer also accepts integer strings ("3"); a JSON number with no fraction is required.
const Int = (options: { minimum: number; maximum?: number }) => t.Number({ ...options, multipleOf: 1 });
const Offset = Int({ minimum: 0 });

const strict = { additionalProperties: false } as const;

export const ClientFrameSchemas = {
  join: t.Object(
    {
      type: t.Literal("join"),
      ref: Ref,
      room: Room,
      lastOffset: t.Optional(Offset),
      epoch: t.Optional(t.String({ minLength: 1, maxLength: 64 })),
    },
    strict,
  ),
  inbox: t.Object(
    {
      type: t.Literal("inbox"),
      ref: Ref,
      lastOffset: t.Optional(Offset),
      epoch: t.Optional(t.String({ minLength: 1, maxLength: 64 })),
    },
    strict,
  ),
  leave: t.Object({ type: t.Literal("leave"), ref: Ref, room: Room }, strict),
  message: t.Object({ type: t.Literal("message"), ref: Ref, room: Room, text: Text, clientMsgId: ClientMsgId }, strict),
  direct: t.Object({ type: t.Literal("direct"), ref: Ref, to: UserId, text: Text, clientMsgId: ClientMsgId }, strict),
  typing: t.Object({ type: t.Literal("typing"), ref: Ref, room: Room, active: t.Boolean() }, strict),
  read: t.Object({ type: t.Literal("read"), ref: Ref, room: Room, offset: Offset }, strict),
  history: t.Object(
    {
      type: t.Literal("history"),
      ref: Ref,
      room: Room,
      before: t.Optional(Int({ minimum: 1 })),
      limit: t.Optional(Int({ minimum: 1, maximum: 100 })),
    },
    strict,
  ),
  presence: t.Object({ type: t.Literal("presence"), ref: Ref, room: Room }, strict),
  ping: t.Object({ type: t.Literal("ping"), ref: Ref }, strict),
  auth: t.Object({ type: t.Literal("auth"), ref: Ref, token: t.String({ minLength: 1, maxLength: 8192 }) }, strict),
} as const;

type Schemas = typeof ClientFrameSchemas;
export type ClientFrameType = keyof Schemas;
export type ClientFrame = { [K in ClientFrameType]: Static<Schemas[K]> }[ClientFrameType];
export type FrameOf<K extends ClientFrameType> = Static<Schemas[K]>;

const checkers = new Map<string, TypeCheck<TSchema>>(
  Object.entries(ClientFrameSchemas).map(([type, schema]) => [type, TypeCompiler.Compile(schema)]),
);

export type ParseResult =
  | { ok: true; frame: ClientFrame }
  | { ok: false; code: ErrorCode; message: string; ref?: string };

/**
 * Turns a raw text frame into a validated client frame, or a stable error code with a message
 * fit to show a developer. Never throws.
 */
export function parseClientFrame(raw: string, maxTextLength: number): ParseResult {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return { ok: false, code: ErrorCode.InvalidJson, message: "frame is not valid JSON" };
  }
  return validateClientFrame(value, maxTextLength);
}

export function validateClientFrame(value: unknown, maxTextLength: number): ParseResult {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, code: ErrorCode.InvalidFrame, message: "frame must be a JSON object" };
  }
  const record = value as Record<string, unknown>;
  const ref = typeof record.ref === "string" && record.ref.length <= 64 ? record.ref : undefined;
  const type = record.type;
  if (typeof type !== "string") {
    return { ok: false, code: ErrorCode.InvalidFrame, message: "frame needs a string `type`", ref };
  }
  // Own-property lookup in a Map: `type: "__proto__"` or "constructor" is simply unknown.
  const checker = checkers.get(type);
  if (!checker) {
    return {
      ok: false,
      code: ErrorCode.UnknownType,
      message: `unknown frame type ${JSON.stringify(type.slice(0, 32))}`,
      ref,
    };
  }
  if (!(type === "message" && isValidMessage(record)) && !checker.Check(value)) {
    const first = checker.Errors(value).First();
    const where = first?.path ? `${first.path}: ` : "";
    return { ok: false, code: ErrorCode.InvalidFrame, message: `${type}: ${where}${first?.message ?? "invalid"}`, ref };
  }
  const text = record.text;
  if (typeof text === "string" && text.length > maxTextLength && codePoints(text) > maxTextLength) {
    return { ok: false, code: ErrorCode.TextTooLong, message: `text is longer than ${maxTextLength} characters`, ref };
  }
  return { ok: true, frame: value as ClientFrame };
}

const ROOM = new RegExp(ROOM_PATTERN);

/**
 * The `message` schema's check written out by hand, for the frame every chat message is: it accepts
 * only what the compiled schema accepts, and whatever it refuses is checked by the schema (which
 * names the field). TypeBox's compiled check lists the object's keys into an array and tests each
 * against the allowed ones with a closure; this one allocates nothing.
 */
function isValidMessage(v: Record<string, unknown>): boolean {
  for (const key in v)
    if (key !== "type" && key !== "room" && key !== "text" && key !== "clientMsgId" && key !== "ref") return false;
  const { ref, room, text, clientMsgId } = v;
  return (
    (ref === undefined || (typeof ref === "string" && ref.length <= 64)) &&
    typeof room === "string" &&
    ROOM.test(room) &&
    typeof text === "string" &&
    text.length >= 1 &&
    typeof clientMsgId === "string" &&
    clientMsgId.length >= 1 &&
    clientMsgId.length <= 64
  );
}

function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}
