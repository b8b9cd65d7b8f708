import type { Cluster, Redis } from "ioredis";
import type { Logger } from "../observability/logger";
import type { RedisCommands } from "../redis/clients";
import type { RedisKeys } from "../redis/keys";
import { RedisScript } from "../redis/script";
import { keySlot } from "../redis/slots";
import { offsetOf, type StoredEntries, tsOf } from "./stored-entries";

// The write-behind from the Redis room logs into the database. A room's log is its queue: the meta
// hash's `persisted` offset says what the database holds, and the append script neither trims nor
// expires the log past it. A pass reads and advances all its rooms of one slot in one script call
// each (every room on one Redis: one call), not one call per room: a log that gives a pass one or
// two entries (a direct-message inbox) otherwise costs two script calls per entry or so, about as
// many as the appends themselves. A call's keys are all in one slot, so it runs on a Redis Cluster too.

/**
 * Takes the rooms' leases (KEYS per room: meta, log, lease; ARGV owner, lease ms, most entries per
 * room) and returns per room {epoch, offset, persisted, entry JSON...} with the entries above
 * `persisted`; {} for a room without meta; {'leased'} when another instance holds its lease.
 */
const TAKE = new RedisScript(`
local out = {}
for i = 1, #KEYS, 3 do
  local meta, log, lease = KEYS[i], KEYS[i + 1], KEYS[i + 2]
  local head = redis.call('HMGET', meta, 'epoch', 'offset', 'persisted')
  local epoch = head[1]
  local reply = {}
  if epoch then
    local holder = redis.call('GET', lease)
    if holder and holder ~= ARGV[1] then
      reply = {'leased'}
    else
      redis.call('SET', lease, ARGV[1], 'PX', ARGV[2])
      local offset = tonumber(head[2])
      local persisted = tonumber(head[3] or '0')
      reply = {epoch, offset, persisted}
      if persisted < offset then
        for _, entry in ipairs(redis.call('XRANGE', log, (persisted + 1) .. '-0', '+', 'COUNT', ARGV[3])) do
          reply[#reply + 1] = entry[2][2]
        end
      end
    end
  end
  out[#out + 1] = reply
end
return out
`);

/**
 * Records per room that the database holds its messages up to an offset of an epoch (KEYS per room:
 * meta, log, lease; ARGV TTL, history size, owner, then per room its epoch and offset). Forward
 * only, and only in the same epoch: a late persister never moves it back, nor marks a newer epoch's
 * messages as stored (that room answers -1). Trims the log to the newest `size` plus what is still
 * unpersisted; once everything is persisted, the log expires after the TTL again and the lease is
 * released. Returns per room the messages still unpersisted.
 */
const ADVANCE = new RedisScript(`
local ttl, size, owner = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local out = {}
for i = 1, #KEYS, 3 do
  local meta, log, lease = KEYS[i], KEYS[i + 1], KEYS[i + 2]
  local a = 4 + 2 * (i - 1) / 3
  local head = redis.call('HMGET', meta, 'epoch', 'offset', 'persisted')
  if head[1] ~= ARGV[a] then
    out[#out + 1] = -1
  else
    local offset = tonumber(head[2])
    local persisted = tonumber(head[3] or '0')
    local to = tonumber(ARGV[a + 1])
    if to > persisted then
      redis.call('HSET', meta, 'persisted', to)
      persisted = to
    end
    redis.call('XTRIM', log, 'MINID', math.max(1, math.min(offset - size + 1, persisted + 1)) .. '-0')
    if persisted >= offset then
      redis.call('EXPIRE', log, ttl)
      if redis.call('GET', lease) == owner then redis.call('DEL', lease) end
    end
    out[#out + 1] = offset - persisted
  end
end
return out
`);

/**
 * The keys of the logs a persister drains: by default the room logs; the direct-message inboxes
 * (see inbox-write-behind.ts) name theirs here, laid out the same way (a meta hash {epoch, offset,
 * persisted}, a stream of `<offset>-0` entries, a lease, a dirty set, a SCAN pattern of the metas).
 */
export type PersistKeys = Pick<
  RedisKeys,
  "roomMeta" | "roomLog" | "roomPersistLease" | "persistDirty" | "roomMetaPattern"
>;

/** What the persister needs of the database. */
export interface WriteBehindTarget {
  /** Inserts log entries as stored in Redis, in one transaction; an entry already stored is skipped. */
  insertStored(batch: readonly StoredEntries[]): Promise<void>;
  /** Resolves when the database answers, rejects otherwise. */
  probe(): Promise<void>;
}

export interface PersisterOptions {
  /** The lease owner's name. */
  instanceId: string;
  historySize: number;
  historyTtlSeconds: number;
  /** How long a room's lease lasts without renewal: another instance takes over after it. */
  leaseMs?: number;
  /** Most messages read from one room per pass. */
  roomBatch?: number;
  /** Messages shared out between the rooms of one pass (an insert carries at most 64 rooms' shares). */
  maxBatch?: number;
  /** How often every room's meta is scanned for unpersisted messages (lost notifications, metrics). */
  scanIntervalMs?: number;
  /** How long an idle persister waits before looking at the dirty set again. */
  idleMs?: number;
  /** Whether Redis is connected: while not, the persister waits instead of failing passes. */
  redisUp?: () => boolean;
  /** The log's owner named in a meta key found by the scan (default: the room of a room meta key). */
  ownerOf?: (metaKey: string) => string | undefined;
}

export interface PersisterStats {
  /** Messages committed to the database by this instance. */
  persisted: number;
  /** Passes that failed, on the database or on Redis (retried). */
  errors: number;
  /** Messages found missing from a room's log below its head: lost with Redis, never persisted. */
  lost: number;
  /** Whether the last insert, or the last probe of an idle persister, succeeded. */
  databaseUp: boolean;
}

interface Lagging {
  backlog: number;
  /** ts of the oldest unpersisted message, when known. */
  since: number | undefined;
}

const MAX_BACKOFF_MS = 2000;
const PROBE_INTERVAL_MS = 2000;
/** A pass writing fewer messages is followed by a pause of GATHER_MS. */
const SMALL_BATCH = 500;
const GATHER_MS = 100;
/**
 * Passes running at once in one instance, on different rooms: one reads Redis while another waits
 * for its insert, and the database commits two batches in parallel.
 */
const WORKERS = 2;
/** Most rooms read in one pass. */
const ROOMS_PER_PASS = 64;

/**
 * Drains every room's unpersisted messages into the database, on any number of instances.
 *
 * Exactly once: rows are unique by (room, epoch, offset) and inserted with ON CONFLICT DO NOTHING;
 * `persisted` moves forward only after the commit, so a crash between the two re-inserts rows the
 * database skips. Nothing lost: the log keeps everything above `persisted`, a failed insert is
 * retried (with a growing pause, up to MAX_BACKOFF_MS) until the database answers. Instances do not
 * fight: a room is written by the holder of its lease (a few seconds, renewed on every pass), so two
 * instances never read the same room at once; a dead holder's rooms pass to another instance when
 * its lease runs out and the scan finds them.
 */
export class RedisPersister {
  readonly stats: PersisterStats = { persisted: 0, errors: 0, lost: 0, databaseUp: true };
  /** Called after each commit with its size, its duration, and each message's delay since its ts. */
  onCommit?: (messages: number, seconds: number, delays: number[]) => void;
  private readonly pending = new Set<string>();
  /** Rooms a worker of this instance is writing. */
  private readonly busy = new Set<string>();
  /** Rooms with unpersisted messages as last seen (by the scan or a pass), for the lag metrics. */
  private lagging = new Map<string, Lagging>();
  private running = false;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private scanner: ReturnType<typeof setInterval> | undefined;
  private scanning = false;
  private readonly sleepers = new Set<() => void>();
  private backoffMs = 0;
  private probedAt = 0;
  private warnedAt = Number.NEGATIVE_INFINITY;
  private readonly leaseMs: number;
  private readonly roomBatch: number;
  private readonly maxBatch: number;
  private readonly idleMs: number;

  constructor(
    private readonly redis: RedisCommands,
    private readonly keys: PersistKeys,
    private readonly target: WriteBehindTarget,
    private readonly options: PersisterOptions,
    private readonly logger: Logger,
  ) {
    this.leaseMs = options.leaseMs ?? 5000;
    this.roomBatch = options.roomBatch ?? 5000;
    this.maxBatch = options.maxBatch ?? 5000;
    this.idleMs = options.idleMs ?? 50;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.scanner = setInterval(() => void this.scan(), this.options.scanIntervalMs ?? 5000);
    void this.scan();
    this.loop = Promise.all(Array.from({ length: WORKERS }, () => this.run())).then(() => {});
  }

  /** Messages not yet in the database, over every room, as last seen. */
  backlog(): number {
    let total = 0;
    for (const room of this.lagging.values()) total += room.backlog;
    return total;
  }

  /** Age of the oldest message not yet in the database, 0 when none is waiting. */
  lagSeconds(now = Date.now()): number {
    let oldest = now;
    for (const room of this.lagging.values()) if (room.since !== undefined && room.since < oldest) oldest = room.since;
    return Math.max(0, (now - oldest) / 1000);
  }

  private async run() {
    while (!this.stopped) {
      if (this.options.redisUp && !this.options.redisUp()) {
        await this.sleep(this.idleMs * 4);
        continue;
      }
      try {
        await this.collectDirty();
        if (this.pending.size === 0) await this.probe();
        const written = await this.pass();
        // Nothing to take, or a small batch: wait a moment so that the next insert carries more
        // (fewer commits and round trips per message; the lag stays far below a second).
        if (written < SMALL_BATCH) await this.sleep(written < 0 ? this.idleMs : GATHER_MS);
        this.backoffMs = 0;
      } catch (error) {
        this.failed(error as Error);
        this.backoffMs = Math.min(MAX_BACKOFF_MS, Math.max(50, this.backoffMs * 2));
        await this.sleep(this.backoffMs);
      }
    }
  }

  /** Moves rooms from the shared dirty set into this instance's pending set. */
  private async collectDirty() {
    const rooms = (await this.redis.spop(this.keys.persistDirty(), 512)) as string[];
    for (const room of rooms) this.pending.add(room);
  }

  /**
   * One pass: reads a batch from pending rooms no other worker of this instance holds, inserts it,
   * advances each room's `persisted`. Returns the messages written, -1 when there was no room to take.
   */
  private async pass(): Promise<number> {
    // An even share of the free rooms per worker, so that every worker has rooms to write.
    const share = Math.min(ROOMS_PER_PASS, Math.max(1, Math.ceil((this.pending.size - this.busy.size) / WORKERS)));
    const rooms: string[] = [];
    for (const room of this.pending) {
      if (this.busy.has(room)) continue;
      rooms.push(room);
      if (rooms.length === share) break;
    }
    if (rooms.length === 0) return -1;
    for (const room of rooms) this.busy.add(room);
    try {
      return await this.write(rooms);
    } finally {
      for (const room of rooms) this.busy.delete(room);
    }
  }

  private async write(rooms: string[]): Promise<number> {
    // An even share of the batch per room (a single busy room gets a large one).
    const count = Math.min(this.roomBatch, Math.max(100, Math.floor(this.maxBatch / rooms.length)));
    const taken = await this.take(rooms, count);
    const batch: StoredEntries[] = [];
    const advances: { room: string; epoch: string; to: number }[] = [];
    let size = 0;
    for (let i = 0; i < rooms.length; i++) {
      const room = rooms[i]!;
      const reply = taken[i]!;
      if (reply.length < 3) {
        // No meta (nothing to write), or another instance holds the room: it is not ours to write.
        this.pending.delete(room);
        if (reply.length === 0) this.lagging.delete(room);
        continue;
      }
      const epoch = String(reply[0]);
      const offset = Number(reply[1]);
      const persisted = Number(reply[2]);
      if (persisted >= offset) {
        this.pending.delete(room);
        this.lagging.delete(room);
        continue;
      }
      // Forwarded as stored, not parsed (see stored-entries.ts).
      const entries = reply.slice(3) as string[];
      const first = entries.length > 0 ? offsetOf(entries[0]!) : offset + 1;
      this.lagging.set(room, {
        backlog: offset - persisted,
        since: entries.length > 0 ? tsOf(entries[0]!) : undefined,
      });
      const expected = persisted + 1;
      if (first > expected) {
        // Missing below the log's oldest entry: Redis lost them (a restart without persistence).
        // They cannot be written; `persisted` moves past them so the room is not stuck.
        this.stats.lost += first - expected;
        this.logger.error("messages missing from a room's log were never written to the database", {
          room,
          epoch,
          from: expected,
          to: first - 1,
        });
      }
      batch.push({ owner: room, epoch, entries });
      size += entries.length;
      advances.push({ room, epoch, to: entries.length > 0 ? offsetOf(entries.at(-1)!) : offset });
    }
    if (advances.length === 0) return 0;
    const started = performance.now();
    try {
      await this.target.insertStored(batch);
    } catch (error) {
      this.stats.databaseUp = false;
      throw error;
    }
    const now = Date.now();
    if (!this.stats.databaseUp) this.logger.info("the message database answers again; writing the backlog behind");
    this.stats.databaseUp = true;
    this.stats.persisted += size;
    if (this.onCommit) {
      const delays: number[] = [];
      for (const { entries } of batch) for (const entry of entries) delays.push((now - (tsOf(entry) ?? now)) / 1000);
      this.onCommit(size, (performance.now() - started) / 1000, delays);
    }
    const left = await this.advance(advances);
    advances.forEach(({ room }, i) => {
      const remaining = left[i]!;
      if (remaining > 0) {
        const known = this.lagging.get(room);
        this.lagging.set(room, { backlog: remaining, since: known?.since });
      } else {
        // Caught up (or the epoch changed under us: the scan or the next append brings it back).
        this.pending.delete(room);
        this.lagging.delete(room);
      }
    });
    return size;
  }

  /**
   * An instance with nothing to write (another holds the busy rooms) still reports the database's
   * state: it asks every PROBE_INTERVAL_MS while idle.
   */
  private async probe() {
    if (Date.now() - this.probedAt < PROBE_INTERVAL_MS) return;
    this.probedAt = Date.now();
    try {
      await this.target.probe();
      this.stats.databaseUp = true;
    } catch {
      this.stats.databaseUp = false;
    }
  }

  private take(rooms: string[], count: number): Promise<unknown[][]> {
    const k = this.keys;
    return this.perSlot(rooms, (group) =>
      TAKE.run(
        this.redis,
        group.flatMap((room) => [k.roomMeta(room), k.roomLog(room), k.roomPersistLease(room)]),
        [this.options.instanceId, this.leaseMs, count],
      ),
    );
  }

  private async advance(advances: { room: string; epoch: string; to: number }[]): Promise<number[]> {
    const k = this.keys;
    const { historyTtlSeconds, historySize, instanceId } = this.options;
    const left = await this.perSlot(advances, (group) =>
      ADVANCE.run(
        this.redis,
        group.flatMap(({ room }) => [k.roomMeta(room), k.roomLog(room), k.roomPersistLease(room)]),
        [historyTtlSeconds, historySize, instanceId, ...group.flatMap(({ epoch, to }) => [epoch, to])],
      ),
    );
    return left.map(Number);
  }

  /**
   * Runs `call` once for all the items on one Redis, once per slot of their rooms on a cluster (a
   * script's keys must share a slot there), and puts the answers back in the items' order. Any call
   * failing fails the pass, which is retried.
   */
  private async perSlot<T extends string | { room: string }, R>(
    items: T[],
    call: (group: T[]) => Promise<unknown>,
  ): Promise<R[]> {
    const roomOfItem = (item: T) => (typeof item === "string" ? item : item.room);
    if (!isCluster(this.redis)) return (await call(items)) as R[];
    const groups = new Map<number, number[]>();
    items.forEach((item, i) => {
      const slot = keySlot(this.keys.roomMeta(roomOfItem(item)));
      const group = groups.get(slot);
      if (group) group.push(i);
      else groups.set(slot, [i]);
    });
    const answers: R[] = new Array(items.length);
    await Promise.all(
      [...groups.values()].map(async (indexes) => {
        const replies = (await call(indexes.map((i) => items[i]!))) as R[];
        indexes.forEach((i, k) => {
          answers[i] = replies[k]!;
        });
      }),
    );
    return answers;
  }

  /**
   * Reads every room's meta: rooms with unpersisted messages join the pending set (a notification
   * lost with a dying instance is found here), and the lag metrics see rooms other instances hold.
   */
  async scan() {
    if (this.scanning || this.stopped || (this.options.redisUp && !this.options.redisUp())) return;
    this.scanning = true;
    try {
      const found = new Map<string, Lagging>();
      for await (const [node, batch] of this.roomMetas()) {
        if (batch.length === 0) continue;
        const pipeline = node.pipeline();
        for (const key of batch) pipeline.hmget(key, "offset", "persisted");
        const replies = (await pipeline.exec()) ?? [];
        replies.forEach(([error, values], i) => {
          if (error) return;
          const [offset, persisted] = (values as (string | null)[]).map((v) => Number(v ?? 0));
          if (offset! <= persisted!) return;
          const room = (this.options.ownerOf ?? roomOf)(batch[i]!);
          if (room === undefined) return;
          found.set(room, { backlog: offset! - persisted!, since: this.lagging.get(room)?.since });
        });
      }
      // The oldest unpersisted message's ts of rooms not read by a pass yet.
      await Promise.all(
        [...found].map(async ([room, lag]) => {
          if (lag.since !== undefined) return;
          const persisted = Number((await this.redis.hget(this.keys.roomMeta(room), "persisted")) ?? 0);
          const [entry] = (await this.redis.xrange(this.keys.roomLog(room), `${persisted + 1}-0`, "+", "COUNT", 1)) as [
            string,
            string[],
          ][];
          const json = entry?.[1][1];
          if (json) lag.since = tsOf(json);
        }),
      );
      for (const room of found.keys()) this.pending.add(room);
      this.lagging = found;
      this.wakeAll();
    } catch (error) {
      this.failed(error as Error, "scan");
    } finally {
      this.scanning = false;
    }
  }

  /**
   * Every room meta key with the connection of the node holding it: one Redis, or each master of a
   * cluster in turn (a SCAN reaches one node only; a pipeline to that node reads keys it owns).
   */
  private async *roomMetas(): AsyncGenerator<[Redis, string[]]> {
    const nodes = isCluster(this.redis) ? this.redis.nodes("master") : [this.redis as Redis];
    for (const node of nodes) {
      const stream = node.scanStream({ match: this.keys.roomMetaPattern(), count: 1000 });
      for await (const batch of stream as AsyncIterable<string[]>) yield [node, batch];
    }
  }

  private failed(error: Error, step = "pass") {
    this.stats.errors++;
    if (Date.now() - this.warnedAt < 10_000) return;
    this.warnedAt = Date.now();
    this.logger.warn("writing messages behind into the database failed; retrying (chat goes on)", {
      step,
      error: error.message,
      backlog: this.backlog(),
    });
  }

  private sleep(ms: number) {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }

  private wakeAll() {
    for (const done of [...this.sleepers]) done();
  }

  /** Stops after the current pass; what is left stays in the logs for the next persister. */
  async stop() {
    this.stopped = true;
    clearInterval(this.scanner);
    this.wakeAll();
    await this.loop;
  }
}

function isCluster(redis: RedisCommands): redis is Cluster {
  return "nodes" in redis && typeof redis.nodes === "function";
}

/** The room of a meta key `<prefix>{room:<name>}:meta`. */
function roomOf(key: string): string | undefined {
  const start = key.indexOf("{room:");
  if (start < 0 || !key.endsWith("}:meta")) return undefined;
  return key.slice(start + 6, -6);
}
