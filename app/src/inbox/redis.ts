import { randomUUIDv7 } from "bun";
import type { DirectMessage } from "../protocol/server-frames";
import type { RedisCommands } from "../redis/clients";
import type { RedisKeys } from "../redis/keys";
import { RedisScript } from "../redis/script";
import { type InboxAppend, type InboxEntry, type InboxStore, replay } from "./inbox";

// An inbox is three kinds of keys under the owner's hash tag {user:<id>} (one slot, so each script
// below touches one slot): a hash {epoch, offset}, a stream whose entry ids are `<offset>-0`, and
// per (from, to, clientMsgId) a dedup key holding "<epoch>\n<entry JSON>". An inbox whose hash is gone
// (expired after INBOX_TTL without a write, flushed, Redis restarted without persistence) starts a
// new epoch: its stream is dropped so an offset never names two entries.
const INBOX_EPOCH = `
local function inbox_epoch(meta, log, fresh, ttl)
  local epoch = redis.call('HGET', meta, 'epoch')
  if epoch then return epoch end
  redis.call('DEL', log)
  redis.call('HSET', meta, 'epoch', fresh, 'offset', 0)
  redis.call('EXPIRE', meta, ttl)
  return fresh
end
`;

// KEYS: meta, log, dedup. ARGV: fresh epoch, entry JSON without its opening brace (the script puts
// the offset first), TTL, cap, dedup window. Returns {duplicate 0/1, epoch, entry JSON}. The dedup
// check and the append are one script: a resend racing the first send on another instance gets
// the first entry, never a second one.
const APPEND = new RedisScript(`${INBOX_EPOCH}
local seen = redis.call('GET', KEYS[3])
if seen then
  local cut = string.find(seen, '\\n', 1, true)
  return {1, string.sub(seen, 1, cut - 1), string.sub(seen, cut + 1)}
end
local epoch = inbox_epoch(KEYS[1], KEYS[2], ARGV[1], ARGV[3])
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local stored = '{"offset":' .. offset .. ',' .. ARGV[2]
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], offset .. '-0', 'm', stored)
redis.call('SET', KEYS[3], epoch .. '\\n' .. stored, 'EX', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return {0, epoch, stored}
`);

// KEYS: meta, log. ARGV: fresh epoch, TTL, first offset to read ('' for the head only), cap.
// Returns {epoch, head, entry JSON...}: the head and the entries in one step.
const SINCE = new RedisScript(`${INBOX_EPOCH}
local epoch = inbox_epoch(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
local out = {epoch, tonumber(redis.call('HGET', KEYS[1], 'offset'))}
if ARGV[3] ~= '' then
  for _, entry in ipairs(redis.call('XRANGE', KEYS[2], ARGV[3] .. '-0', '+', 'COUNT', ARGV[4])) do
    out[#out + 1] = entry[2][2]
  end
end
return out
`);

/** Inboxes in Redis, shared by every instance. */
export class RedisInboxStore implements InboxStore {
  constructor(
    private readonly redis: RedisCommands,
    private readonly keys: RedisKeys,
    private readonly options: { size: number; ttlSeconds: number; dedupWindowSeconds: number },
  ) {}

  async append(owner: string, message: DirectMessage): Promise<InboxAppend> {
    const { keys, options } = this;
    const [duplicate, epoch, stored] = (await APPEND.run(
      this.redis,
      [
        keys.inboxMeta(owner),
        keys.inboxLog(owner),
        keys.inboxDedup(owner, message.from, message.to, message.clientMsgId),
      ],
      [randomUUIDv7(), JSON.stringify(message).slice(1), options.ttlSeconds, options.size, options.dedupWindowSeconds],
    )) as [0 | 1, string, string];
    return { epoch, entry: JSON.parse(stored) as InboxEntry, duplicate: duplicate === 1 };
  }

  async since(owner: string, after: number | undefined, epoch: string | undefined, limit: number) {
    // The epoch is only known inside the script: read from `after` and drop it when the epoch differs.
    const read = async (from: number | undefined) =>
      (await SINCE.run(
        this.redis,
        [this.keys.inboxMeta(owner), this.keys.inboxLog(owner)],
        [randomUUIDv7(), this.options.ttlSeconds, from === undefined ? "" : from + 1, limit],
      )) as [string, number, ...string[]];
    let from = after;
    let [current, head, ...entries] = await read(from);
    if (from !== undefined && epoch !== undefined && epoch !== current) {
      from = 0;
      [current, head, ...entries] = await read(from);
    }
    const messages = entries.map((json) => JSON.parse(json) as InboxEntry);
    return replay(current, Number(head), from, messages, epoch);
  }

  async close() {}
}
