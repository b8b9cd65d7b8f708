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
// new epoch: its stream is dropped so an offset never names two entries. With a database behind
// (write-behind), the script asks first (a fresh epoch of '' returns nil): the caller restores the
// hash from the database's head (RESTORE), so the inbox continues its epoch and offsets.
const INBOX_EPOCH = `
local function inbox_epoch(meta, log, fresh, ttl)
  local epoch = redis.call('HGET', meta, 'epoch')
  if epoch then return epoch end
  if fresh == '' then return nil end
  redis.call('DEL', log)
  redis.call('HSET', meta, 'epoch', fresh, 'offset', 0)
  redis.call('EXPIRE', meta, ttl)
  return fresh
end
`;

// KEYS: meta, log, dedup. ARGV: fresh epoch, entry JSON without its opening brace (the script puts
// the offset first), TTL, cap, dedup window, '1' with write-behind. Returns {duplicate 0/1, epoch,
// entry JSON}, or {-1} when the inbox has no epoch and none was given. The dedup check and the
// append are one script: a resend racing the first send on another instance gets the first entry,
// never a second one. With write-behind the stream is the queue to the database, like a room's log:
// neither trimmed below the hash's `persisted` offset nor expiring while entries wait (the
// persister's ADVANCE trims it to the cap and lets it expire once the database holds them).
const APPEND = new RedisScript(`${INBOX_EPOCH}
local seen = redis.call('GET', KEYS[3])
if seen then
  local cut = string.find(seen, '\\n', 1, true)
  return {1, string.sub(seen, 1, cut - 1), string.sub(seen, cut + 1)}
end
local epoch = inbox_epoch(KEYS[1], KEYS[2], ARGV[1], ARGV[3])
if not epoch then return {-1} end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local stored = '{"offset":' .. offset .. ',' .. ARGV[2]
if ARGV[6] == '1' then
  local persisted = tonumber(redis.call('HGET', KEYS[1], 'persisted') or '0')
  redis.call('XADD', KEYS[2], offset .. '-0', 'm', stored)
  redis.call('XTRIM', KEYS[2], 'MINID', math.max(1, math.min(offset - tonumber(ARGV[4]) + 1, persisted + 1)) .. '-0')
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
else
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], offset .. '-0', 'm', stored)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
redis.call('SET', KEYS[3], epoch .. '\\n' .. stored, 'EX', ARGV[5])
return {0, epoch, stored}
`);

// KEYS: meta, log. ARGV: fresh epoch, TTL, first offset to read ('' for the head only), cap.
// Returns {epoch, head, entry JSON...}: the head and the entries in one step; {-1} as APPEND.
const SINCE = new RedisScript(`${INBOX_EPOCH}
local epoch = inbox_epoch(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
if not epoch then return {-1} end
local out = {epoch, tonumber(redis.call('HGET', KEYS[1], 'offset'))}
if ARGV[3] ~= '' then
  for _, entry in ipairs(redis.call('XRANGE', KEYS[2], ARGV[3] .. '-0', '+', 'COUNT', ARGV[4])) do
    out[#out + 1] = entry[2][2]
  end
end
return out
`);

// KEYS: meta, log. ARGV: epoch, head, TTL. An inbox without a hash continues the database's epoch
// and head, everything up to it persisted; one that has a hash again (another call restored it, or
// appended) is left alone.
const RESTORE = new RedisScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'offset', ARGV[2], 'persisted', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
`);

/** An inbox's epoch and head as a database behind Redis holds them. */
export type InboxResume = (owner: string) => Promise<{ epoch: string; offset: number } | undefined>;

export interface RedisInboxOptions {
  size: number;
  ttlSeconds: number;
  dedupWindowSeconds: number;
  /**
   * With a database the entries are written behind into (see InboxPersister): the stream is kept
   * above `persisted`, each append marks the inbox dirty, and an inbox without a hash continues
   * the epoch and head `resume` reads from the database (a fresh epoch when it holds none). `resume`
   * answers undefined rather than failing: a database that is down then costs the inbox its epoch,
   * not the message.
   */
  writeBehind?: { resume: InboxResume };
}

/** Inboxes in Redis, shared by every instance. */
export class RedisInboxStore implements InboxStore {
  constructor(
    private readonly redis: RedisCommands,
    private readonly keys: RedisKeys,
    private readonly options: RedisInboxOptions,
  ) {}

  async append(owner: string, message: DirectMessage): Promise<InboxAppend> {
    const { keys, options } = this;
    const behind = options.writeBehind ? "1" : "0";
    const reply = await this.withEpoch(
      owner,
      async (fresh) =>
        (await APPEND.run(
          this.redis,
          [
            keys.inboxMeta(owner),
            keys.inboxLog(owner),
            keys.inboxDedup(owner, message.from, message.to, message.clientMsgId),
          ],
          [
            fresh,
            JSON.stringify(message).slice(1),
            options.ttlSeconds,
            options.size,
            options.dedupWindowSeconds,
            behind,
          ],
        )) as [0 | 1, string, string] | [-1],
    );
    const [duplicate, epoch, stored] = reply as [0 | 1, string, string];
    // Tells the persisters; if this is lost, their scan of the inbox metas finds the inbox instead.
    if (options.writeBehind && duplicate === 0) this.redis.sadd(keys.inboxPersistDirty(), owner).catch(() => {});
    return { epoch, entry: JSON.parse(stored) as InboxEntry, duplicate: duplicate === 1 };
  }

  async since(owner: string, after: number | undefined, epoch: string | undefined, limit: number) {
    // The epoch is only known inside the script: read from `after` and drop it when the epoch differs.
    const read = (from: number | undefined) =>
      this.withEpoch(
        owner,
        async (fresh) =>
          (await SINCE.run(
            this.redis,
            [this.keys.inboxMeta(owner), this.keys.inboxLog(owner)],
            [fresh, this.options.ttlSeconds, from === undefined ? "" : from + 1, limit],
          )) as [string, number, ...string[]] | [-1],
      ) as Promise<[string, number, ...string[]]>;
    let from = after;
    let [current, head, ...entries] = await read(from);
    if (from !== undefined && epoch !== undefined && epoch !== current) {
      from = 0;
      [current, head, ...entries] = await read(from);
    }
    const messages = entries.map((json) => JSON.parse(json) as InboxEntry);
    return replay(current, Number(head), from, messages, epoch);
  }

  /**
   * Runs a script with a fresh epoch; with write-behind, first without one, and when the inbox has
   * no hash, restores it from the database's head before running it again.
   */
  private async withEpoch<T extends unknown[]>(owner: string, run: (fresh: string) => Promise<T | [-1]>) {
    const resume = this.options.writeBehind?.resume;
    if (resume) {
      const first = await run("");
      if (first[0] !== -1) return first as T;
      const head = await resume(owner);
      if (head)
        await RESTORE.run(
          this.redis,
          [this.keys.inboxMeta(owner), this.keys.inboxLog(owner)],
          [head.epoch, head.offset, this.options.ttlSeconds],
        );
    }
    return (await run(randomUUIDv7())) as T;
  }

  async close() {}
}
