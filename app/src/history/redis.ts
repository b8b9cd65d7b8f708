import type Redis from "ioredis";
import { randomUUIDv7 } from "bun";
import type { RoomMessage } from "../protocol/server-frames";
import type { RedisKeys } from "../redis/keys";
import { roomTopic } from "../rooms/topics";
import { RedisScript } from "../redis/script";
import type { AppendReceipt, AppendResult, HistoryStore, MessageDraft, Replay, RoomHead } from "./history";

// A room is two keys: a hash {epoch, offset} and a stream whose entry ids are `<offset>-0`, so a
// range of offsets is a range of ids. The epoch is created with the first write or read after the
// keys were lost (expired, flushed, or a Redis without persistence restarted), and offsets restart
// with it. With `publishAs`, the append script also publishes the message on the room's backplane
// channel: Redis runs scripts one at a time, so every instance receives a room's messages in offset
// order and pub/sub reordering cannot open false gaps.

/** Both scripts run this first on the room: KEYS[1] meta, KEYS[2] log, ARGV[1] a fresh epoch, ARGV[2] the TTL. */
const ROOM_EPOCH = `
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
`;

// KEYS[3] is the sender's dedup key for this clientMsgId, shared with older releases, which claimed
// it with SET NX "" and then wrote the answer: an empty value is such a claim still in progress.
// Returns {0, epoch, offset} when stored, {1, receipt JSON} for a repeat, {2} for a claim in progress.
const APPEND = new RedisScript(`
local seen = redis.call('GET', KEYS[3])
if seen then
  if seen == '' then return {2} end
  return {1, seen}
end
${ROOM_EPOCH}
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local stored = (string.gsub(ARGV[3], '"offset":0', '"offset":' .. offset, 1))
local size = tonumber(ARGV[4])
if size > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', size, offset .. '-0', 'm', stored)
end
if ARGV[5] ~= '' then
  redis.call('PUBLISH', ARGV[5], '{"origin":"' .. ARGV[6] .. '","topic":"' .. ARGV[7] .. '","epoch":"' .. epoch ..
    '","offset":' .. offset .. ',"sentAt":' .. ARGV[8] .. ',"message":' .. stored .. '}')
end
redis.call('SET', KEYS[3], (string.gsub(ARGV[9], '"offset":0', '"offset":' .. offset, 1)), 'EX', ARGV[10])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return {0, epoch, offset}
`);

const HEAD = new RedisScript(`${ROOM_EPOCH}
return {epoch, tonumber(redis.call('HGET', KEYS[1], 'offset'))}
`);

type Entries = [id: string, fields: string[]][];

export class RedisHistoryStore implements HistoryStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly options: {
      historySize: number;
      ttlSeconds: number;
      /** How long a (from, clientMsgId) pair is remembered. */
      dedupWindowSeconds: number;
      /** Publish each appended message to the backplane as this instance. */
      publishAs?: string;
    },
  ) {}

  async append(draft: MessageDraft): Promise<AppendResult> {
    const { keys, options } = this;
    // The offset is only known inside the script; the stored JSON and the receipt get it by a single
    // substitution of their leading "offset":0 (room and id cannot contain that text).
    const json = JSON.stringify({ offset: 0, ...draft });
    const receipt = JSON.stringify({ offset: 0, room: draft.room, id: draft.id, ts: draft.ts });
    const topic = roomTopic(draft.room);
    const result = (await APPEND.run(
      this.redis,
      [keys.roomMeta(draft.room), keys.roomLog(draft.room), keys.dedup(draft.from, `message:${draft.clientMsgId}`)],
      [
        randomUUIDv7(),
        options.ttlSeconds,
        json,
        options.historySize,
        options.publishAs ? keys.channel(topic) : "",
        options.publishAs ?? "",
        topic,
        Date.now(),
        receipt,
        options.dedupWindowSeconds,
      ],
    )) as [0, string, number] | [1, string] | [2];
    if (result[0] === 2) return { status: "pending" };
    if (result[0] === 1) return { status: "duplicate", receipt: JSON.parse(result[1]) as AppendReceipt };
    const [, epoch, offset] = result;
    return {
      status: "stored",
      message: { ...draft, offset: Number(offset) } as RoomMessage,
      epoch,
      published: options.publishAs !== undefined,
    };
  }

  async head(room: string): Promise<RoomHead> {
    const [epoch, offset] = (await HEAD.run(this.redis, [this.keys.roomMeta(room), this.keys.roomLog(room)], [
      randomUUIDv7(),
      this.options.ttlSeconds,
    ])) as [string, number];
    return { epoch, offset: Number(offset) };
  }

  async since(room: string, afterOffset: number, epoch?: string): Promise<Replay> {
    const head = await this.head(room);
    if (epoch !== undefined && epoch !== head.epoch) return { epoch: head.epoch, messages: [], complete: false };
    if (afterOffset >= head.offset) return { epoch: head.epoch, messages: [], complete: afterOffset === head.offset };
    const entries = (await this.redis.xrange(this.keys.roomLog(room), `${afterOffset + 1}-0`, "+")) as Entries;
    const messages = decode(entries);
    const first = messages[0]?.offset;
    return { epoch: head.epoch, messages, complete: first === afterOffset + 1 };
  }

  async before(room: string, before: number | undefined, limit: number) {
    const end = before === undefined ? "+" : `(${before}-0`;
    const entries = (await this.redis.xrevrange(this.keys.roomLog(room), end, "-", "COUNT", limit + 1)) as Entries;
    const messages = decode(entries.slice(0, limit)).reverse();
    return { messages, hasMore: entries.length > limit };
  }

  async close() {}
}

function decode(entries: Entries): RoomMessage[] {
  const out: RoomMessage[] = [];
  for (const [, fields] of entries) {
    const json = fields[1];
    if (json) out.push(JSON.parse(json));
  }
  return out;
}
