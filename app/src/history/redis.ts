import { randomUUIDv7 } from "bun";
import type { Cluster, Redis } from "ioredis";
import { type EnvelopeVersion, LUA_PUBLISH } from "../backplane/envelope";
import type { RoomMessage } from "../protocol/server-frames";
import type { RedisCommands } from "../redis/clients";
import type { RedisKeys } from "../redis/keys";
import { RedisScript } from "../redis/script";
import { keySlot } from "../redis/slots";
import { roomTopic } from "../rooms/topics";
import type { AppendReceipt, AppendResult, HistoryStore, MessageDraft, Replay, RoomHead } from "./history";

// A room is two keys: a hash {epoch, offset} and a stream whose entry ids are `<offset>-0`, so a
// range of offsets is a range of ids. With `publishAs`, the append script also publishes the message
// on the room's backplane channel: Redis runs scripts one at a time, so every instance receives a
// room's messages in offset order and pub/sub reordering cannot open false gaps.
//
// Time never runs backwards silently. Each instance remembers, per room, the newest offset it saw
// stored or delivered and its epoch, and passes them to every script call. A room gets a new epoch
// when its keys were lost (expired, flushed, Redis restarted without persistence) and also when
// its stored head is below what the caller saw in the same epoch: Redis came back with less than it
// had (restarted from a stale snapshot or an AOF missing its last second, a failover to a lagging
// replica). The new epoch's offsets continue above the highest one the caller saw, so no offset
// names two messages and no instance drops a new message as one it already delivered.
//
// On a Redis Cluster every key of a message (meta, log, dedup) and its channel carry the room's hash
// tag, a batch is split into one script call per master (the script touches only the slots of the
// node it runs on), and the script publishes with SPUBLISH, so the message reaches only the
// instances subscribed to the room on its shard.

/**
 * Both scripts define this: the epoch of a room (meta, log keys), replaced by `fresh` when the keys
 * were lost or the stored head is below `floor`, the newest offset the caller saw in epoch `seen`.
 * Returns the epoch and 1 when it replaced an epoch that had gone backwards. A new epoch records
 * where it started ("<epoch> <floor>": an older release does not write it, so it counts only while
 * its epoch is the room's).
 */
const ROOM_EPOCH = `
local function room_epoch(meta, log, fresh, ttl, seen, floor)
  local epoch = redis.call('HGET', meta, 'epoch')
  if epoch and (epoch ~= seen or tonumber(redis.call('HGET', meta, 'offset')) >= floor) then
    return epoch, 0
  end
  if not epoch then
    redis.call('DEL', log)
  end
  -- A new epoch starts with nothing to write behind: its first offset is floor + 1.
  redis.call('HSET', meta, 'epoch', fresh, 'offset', floor, 'start', fresh .. ' ' .. floor, 'persisted', floor)
  redis.call('EXPIRE', meta, ttl)
  return fresh, epoch and 1 or 0
end
`;

/** Values per message in APPEND's ARGV, after the shared ones. */
const APPEND_ARGS_PER_MESSAGE = 7;

// Stores a batch of messages, in order. ARGV[1] TTL, ARGV[2] history size, ARGV[3] origin instance
// ('' = do not publish), ARGV[4] sentAt, ARGV[5] dedup window, ARGV[6] '1' with write-behind (the
// log is the queue to the database: it is neither trimmed nor expired past the meta's `persisted`
// offset, and the meta does not expire, so a room keeps its epoch while the database holds its
// messages), ARGV[7] the backplane envelope version to publish ('1' or '2', see
// src/backplane/envelope.ts: v2 is one PUBLISH per room per call); then per message a fresh epoch, the
// stored JSON and the receipt JSON without their opening brace (the script puts the offset first),
// the channel, the topic, and the epoch and newest offset the caller saw of the room ('' and 0 when
// it saw none). Keys per message: meta, log, and the
// sender's dedup key for its clientMsgId. The dedup key is shared with older releases, which claimed
// it with SET NX "" and then wrote the answer: an empty value is such a claim still in progress.
// Returns per message {0, epoch, offset, reset} when stored (reset 1 when the room's epoch was
// replaced because it had gone backwards), {1, receipt JSON} for a repeat, {2} for a
// claim in progress, {3} when this node does not serve its slot now (see below). Each room's TTL is
// renewed once per batch. PUBLISH is the command given.
//
// The keys of the first messages are declared in KEYS, the keys of the others follow the messages'
// values in ARGV. On one Redis, and on a cluster for messages of one slot, every key is declared. On
// a cluster a call for messages of several slots of one node (see RedisHistoryStore.storeNode)
// declares none: Redis refuses declared keys of two slots, and the flag allow-cross-slot-keys lets
// the script reach undeclared keys of every slot of its node. Redis checks each such command, and
// refuses one on a key whose slot is not the node's or is being moved (MOVED, ASK, TRYAGAIN) after
// the commands before it ran. So the dedup keys of a room's messages are read first, with one MGET
// per room that also reads its meta (a read of several keys of a half-moved slot is refused as the
// call with its keys declared would be), and a room whose read is refused is answered {3} and
// nothing of it is written. One read per room, not per message: on a cluster Redis checks the slot
// of every key of every command a script runs, and the messages of a turn come in runs per room.
// A clientMsgId sent twice in one call is answered as a repeat from what the call itself wrote.
const appendScript = (publish: "PUBLISH" | "SPUBLISH") =>
  new RedisScript(`${publish === "SPUBLISH" ? "#!lua flags=allow-cross-slot-keys\n" : ""}${ROOM_EPOCH}
local ttl, size, origin, sentAt, window = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local behind = ARGV[6] == '1'
local publish, version = '${publish}', ARGV[7]
${LUA_PUBLISH}
local count = (#ARGV - 7 + #KEYS) / (3 + ${APPEND_ARGS_PER_MESSAGE})
local keys, rest = KEYS, 7 + ${APPEND_ARGS_PER_MESSAGE} * count - #KEYS
local declared = #KEYS == 3 * count
if not declared then
  keys = {}
  for j = 1, 3 * count do keys[j] = KEYS[j] or ARGV[rest + j] end
end
local reads, read_order = {}, {}
for j = 1, 3 * count, 3 do
  local read = reads[keys[j]]
  if not read then
    read = {keys[j]}
    reads[keys[j]] = read
    read_order[#read_order + 1] = read
  end
  read[#read + 1] = keys[j + 2]
end
local seens, away = {}, {}
for _, read in ipairs(read_order) do
  local values = declared and redis.call('MGET', unpack(read)) or redis.pcall('MGET', unpack(read))
  if values.err then
    away[read[1]] = true
  else
    for k = 2, #read do seens[read[k]] = values[k] end
  end
end
local results, epochs, logs = {}, {}, {}
for i = 0, count - 1 do
  local meta, log, dedup = keys[3 * i + 1], keys[3 * i + 2], keys[3 * i + 3]
  local a = 8 + ${APPEND_ARGS_PER_MESSAGE} * i
  local seen = seens[dedup]
  if away[meta] then
    results[i + 1] = {3}
  elseif seen then
    results[i + 1] = seen == '' and {2} or {1, seen}
  else
    local epoch, reset = epochs[meta], 0
    if not epoch then
      epoch, reset = room_epoch(meta, log, ARGV[a], ttl, ARGV[a + 5], tonumber(ARGV[a + 6]))
      epochs[meta] = epoch
      logs[meta] = log
    end
    local offset = redis.call('HINCRBY', meta, 'offset', 1)
    local stored = '{"offset":' .. offset .. ',' .. ARGV[a + 1]
    if behind then
      redis.call('XADD', log, offset .. '-0', 'm', stored)
    elseif size > 0 then
      redis.call('XADD', log, 'MAXLEN', size, offset .. '-0', 'm', stored)
    end
    if origin ~= '' then
      queue_publish(ARGV[a + 3], ARGV[a + 4], epoch, offset, stored)
    end
    local receipt = '{"offset":' .. offset .. ',' .. ARGV[a + 2]
    redis.call('SET', dedup, receipt, 'EX', window)
    seens[dedup] = receipt
    results[i + 1] = {0, epoch, offset, reset}
  end
end
flush_publish()
for meta, log in pairs(logs) do
  if behind then
    local offset = tonumber(redis.call('HGET', meta, 'offset'))
    local persisted = tonumber(redis.call('HGET', meta, 'persisted') or '0')
    redis.call('PERSIST', meta)
    redis.call('PERSIST', log)
    redis.call('XTRIM', log, 'MINID', math.max(1, math.min(offset - size + 1, persisted + 1)) .. '-0')
  else
    redis.call('EXPIRE', meta, ttl)
    redis.call('EXPIRE', log, ttl)
  end
end
return results
`);

const APPEND = { single: appendScript("PUBLISH"), cluster: appendScript("SPUBLISH") };

const HEAD = new RedisScript(`${ROOM_EPOCH}
local epoch, reset = room_epoch(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]))
local head = redis.call('HMGET', KEYS[1], 'offset', 'start')
return {epoch, tonumber(head[1]), reset, head[2] or ''}
`);

/** Most messages stored by one script call. */
const MAX_BATCH = 64;

/**
 * Rooms whose newest seen offset is remembered; past this, the longest-known room is forgotten (it
 * then only misses the backwards check until it is seen again).
 */
const MAX_SEEN_ROOMS = 100_000;

type AppendReply = [0, string, number, 0 | 1] | [1, string] | [2] | [3];

interface PendingAppend {
  draft: MessageDraft;
  resolve: (result: AppendResult) => void;
  reject: (error: unknown) => void;
}

type Entries = [id: string, fields: string[]][];

/**
 * History in Redis. Appends made in the same turn of the event loop (the frames of one read from
 * many sockets) go to Redis together, in one script call: under load, one round trip and one script
 * run carry many messages, which is most of what a message costs Redis and this process.
 */
export class RedisHistoryStore implements HistoryStore {
  private batch: PendingAppend[] = [];

  constructor(
    private readonly redis: RedisCommands,
    private readonly keys: RedisKeys,
    private readonly options: {
      historySize: number;
      ttlSeconds: number;
      /** How long a (from, clientMsgId) pair is remembered. */
      dedupWindowSeconds: number;
      /** Publish each appended message to the backplane as this instance. */
      publishAs?: string;
      /**
       * The envelope version to publish in (default 1, which every release reads): 2 only while
       * every live instance reads it (EnvelopeVersions).
       */
      envelopeVersion?: () => EnvelopeVersion;
      /**
       * Messages are written behind into a database (see RedisPersister): the log keeps what the
       * database does not hold yet, and each stored room is added to the dirty set after the script.
       */
      writeBehind?: boolean;
      /** Called when a room got a new epoch because Redis held less than this instance saw. */
      onEpochReset?: (room: string, epoch: string, seen: RoomHead) => void;
    },
  ) {}

  /** Per room: the newest offset this instance saw stored or delivered, and its epoch. */
  private readonly seen = new Map<string, RoomHead>();

  /**
   * Records that a room's messages up to `offset` of `epoch` were seen here (stored, read, or
   * delivered from another instance), so a Redis that later holds less is noticed.
   */
  observe(room: string, epoch: string, offset: number) {
    const known = this.seen.get(room);
    if (known && known.epoch === epoch) {
      if (offset > known.offset) known.offset = offset;
      return;
    }
    this.seen.delete(room);
    this.seen.set(room, { epoch, offset });
    if (this.seen.size > MAX_SEEN_ROOMS) this.seen.delete(this.seen.keys().next().value!);
  }

  private floor(room: string): [string, number] {
    const known = this.seen.get(room);
    return known ? [known.epoch, known.offset] : ["", 0];
  }

  private reset(room: string, epoch: string, reset: number | undefined) {
    if (reset !== 1) return;
    const known = this.seen.get(room);
    if (known) this.options.onEpochReset?.(room, epoch, { ...known });
  }

  append(draft: MessageDraft): Promise<AppendResult> {
    return new Promise((resolve, reject) => {
      if (this.batch.length === 0) setImmediate(() => this.flush());
      this.batch.push({ draft, resolve, reject });
      if (this.batch.length >= MAX_BATCH) this.flush();
    });
  }

  private flush() {
    const batch = this.batch;
    if (batch.length === 0) return;
    this.batch = [];
    this.store(batch).then(
      (replies) => {
        if (this.options.writeBehind) this.markDirty(batch, replies);
        // Each append gets its own answer: a reply that cannot be read fails that append alone.
        batch.forEach((pending, i) => {
          const reply = replies[i]!;
          if (reply instanceof Error) {
            pending.reject(reply);
            return;
          }
          try {
            pending.resolve(this.result(pending.draft, reply));
          } catch (error) {
            pending.reject(error);
          }
        });
      },
      (error) => {
        for (const pending of batch) pending.reject(error);
      },
    );
  }

  /**
   * Tells the persisters which rooms have new messages. Sent after the script (a cluster runs one
   * script on one slot, and the set is not a room's): if this is lost (Redis failed, the process
   * died), the persisters' periodic scan of room metas finds the room instead.
   */
  private markDirty(batch: PendingAppend[], replies: (AppendReply | Error)[]) {
    const rooms = new Set<string>();
    batch.forEach((pending, i) => {
      const reply = replies[i];
      if (!(reply instanceof Error) && reply?.[0] === 0) rooms.add(pending.draft.room);
    });
    if (rooms.size > 0) this.redis.sadd(this.keys.persistDirty(), ...rooms).catch(() => {});
  }

  /**
   * One script call for a batch on one Redis. On a cluster, one per master: the batch is grouped by
   * the master that owns each message's slot in the cluster client's slot map, so the fixed cost of
   * a call (EVALSHA, entering Lua, the reply) is paid once per master and turn, as on one Redis,
   * instead of once per slot (with many rooms, nearly once per message). Each group is a batch of its
   * own: a master that fails fails only its appends. Answers are put back in the batch's order.
   */
  private store(batch: PendingAppend[]): Promise<(AppendReply | Error)[]> {
    if (this.keys.layout === "single") return this.storeCall(this.redis, batch, batch.length);
    const cluster = this.redis as Cluster;
    const slots = batch.map(({ draft }) => keySlot(this.keys.roomMeta(draft.room)));
    const owners = cluster.slots;
    const masters = new Map<string, Redis>();
    for (const node of cluster.nodes("master")) masters.set(`${node.options.host}:${node.options.port}`, node);
    // A slot without a known master is a group of its own: its call finds the master (MOVED).
    return scatter(
      batch,
      (i) => owners[slots[i]!]?.[0] ?? slots[i]!,
      (indexes) => {
        const part = indexes.map((i) => batch[i]!);
        const partSlots = indexes.map((i) => slots[i]!);
        const owner = owners[partSlots[0]!]?.[0];
        const node = owner === undefined ? undefined : masters.get(owner);
        return node && partSlots.some((slot) => slot !== partSlots[0])
          ? this.storeNode(node, part, partSlots)
          : this.storeBySlot(part, partSlots);
      },
    );
  }

  /**
   * One call for messages of several slots that the slot map puts on `node`, sent on the cluster
   * client's own connection to it and declaring no key: the script checks each message's slot
   * itself (see the APPEND script). Messages it found not served there (answered {3}: the slot
   * moved since the slot map was read, or is being moved), and every message of a call that Redis
   * refused as a whole (the node is a replica now, the cluster is down) are stored again with one
   * call per slot, which declares its keys, so the cluster client follows Redis' redirections (MOVED,
   * ASK, TRYAGAIN) for them. A call that failed otherwise (a lost connection, a timeout) may have
   * run: its appends fail, and the clients resend them, which the dedup makes exactly-once.
   */
  private async storeNode(node: Redis, batch: PendingAppend[], slots: number[]): Promise<(AppendReply | Error)[]> {
    if (node.status !== "ready") return this.storeBySlot(batch, slots);
    let answers: (AppendReply | Error)[];
    try {
      answers = await this.storeCall(node, batch, 0);
    } catch (error) {
      if ((error as Error).name !== "ReplyError") throw error;
      return this.storeBySlot(batch, slots);
    }
    const away: number[] = [];
    answers.forEach((answer, i) => {
      if ((answer as AppendReply)[0] === 3) away.push(i);
    });
    if (away.length > 0) {
      const again = await this.storeBySlot(
        away.map((i) => batch[i]!),
        away.map((i) => slots[i]!),
      );
      for (const [k, i] of away.entries()) answers[i] = again[k]!;
    }
    return answers;
  }

  /** One call per slot through the cluster client, every key declared. */
  private storeBySlot(batch: PendingAppend[], slots: number[]): Promise<(AppendReply | Error)[]> {
    return scatter(
      batch,
      (i) => slots[i]!,
      (indexes) =>
        this.storeCall(
          this.redis,
          indexes.map((i) => batch[i]!),
          indexes.length,
        ),
    );
  }

  /** One script call; the keys of the first `declared` messages are declared, the others passed in ARGV. */
  private storeCall(redis: RedisCommands, batch: PendingAppend[], declared: number): Promise<AppendReply[]> {
    const { keys, options } = this;
    const keyList: string[] = [];
    const args: (string | number)[] = [
      options.ttlSeconds,
      options.historySize,
      options.publishAs ?? "",
      Date.now(),
      options.dedupWindowSeconds,
      options.writeBehind ? "1" : "0",
      options.envelopeVersion?.() ?? 1,
    ];
    for (const { draft } of batch) {
      const topic = roomTopic(draft.room);
      keyList.push(
        keys.roomMeta(draft.room),
        keys.roomLog(draft.room),
        keys.messageDedup(draft.room, draft.from, draft.clientMsgId),
      );
      // The offset is only known inside the script, which writes `{"offset":<n>,` before these.
      args.push(
        randomUUIDv7(),
        JSON.stringify(draft).slice(1),
        JSON.stringify({ room: draft.room, id: draft.id, ts: draft.ts }).slice(1),
        options.publishAs ? keys.channel(topic) : "",
        topic,
        ...this.floor(draft.room),
      );
    }
    const split = 3 * declared;
    if (split < keyList.length) args.push(...keyList.splice(split));
    return APPEND[keys.layout].run(redis, keyList, args) as Promise<AppendReply[]>;
  }

  private result(draft: MessageDraft, reply: AppendReply): AppendResult {
    if (reply[0] === 2) return { status: "pending" };
    // Only a call declaring some keys in ARGV answers {3}, and store() sends those messages again.
    if (reply[0] === 3) throw new Error(`the slot of room ${draft.room} is not served by the node asked`);
    if (reply[0] === 1) return { status: "duplicate", receipt: JSON.parse(reply[1]) as AppendReceipt };
    const [, epoch, offset, reset] = reply;
    this.reset(draft.room, epoch, reset);
    this.observe(draft.room, epoch, Number(offset));
    return {
      status: "stored",
      message: { ...draft, offset: Number(offset) } as RoomMessage,
      epoch,
      published: this.options.publishAs !== undefined,
    };
  }

  async head(room: string): Promise<RoomHead> {
    const [epoch, offset, reset, start] = (await HEAD.run(
      this.redis,
      [this.keys.roomMeta(room), this.keys.roomLog(room)],
      [randomUUIDv7(), this.options.ttlSeconds, ...this.floor(room)],
    )) as [string, number, number, string];
    this.reset(room, epoch, reset);
    this.observe(room, epoch, Number(offset));
    const [startEpoch, startOffset] = start.split(" ");
    return startEpoch === epoch && startOffset !== undefined
      ? { epoch, offset: Number(offset), start: Number(startOffset) }
      : { epoch, offset: Number(offset) };
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

/**
 * Runs `run` once per group of the batch's indexes (by `groupOf`) and puts the answers back in the
 * batch's order; a group whose call fails gets its error, the others their answers.
 */
function scatter<R>(
  batch: unknown[],
  groupOf: (i: number) => string | number,
  run: (indexes: number[]) => Promise<R[]>,
): Promise<(R | Error)[]> {
  const groups = new Map<string | number, number[]>();
  for (let i = 0; i < batch.length; i++) {
    const key = groupOf(i);
    const indexes = groups.get(key);
    if (indexes) indexes.push(i);
    else groups.set(key, [i]);
  }
  const replies: (R | Error)[] = new Array(batch.length);
  return Promise.all(
    [...groups.values()].map((indexes) =>
      run(indexes).then(
        (answers) => {
          for (const [k, i] of indexes.entries()) replies[i] = answers[k]!;
        },
        (error: Error) => {
          for (const i of indexes) replies[i] = error;
        },
      ),
    ),
  ).then(() => replies);
}

function decode(entries: Entries): RoomMessage[] {
  const out: RoomMessage[] = [];
  for (const [, fields] of entries) {
    const json = fields[1];
    if (json) out.push(JSON.parse(json));
  }
  return out;
}
