import { EventEmitter } from "node:events";
import Redis, { type Cluster, type RedisOptions } from "ioredis";
import type { BackplaneSubscriber } from "./clients";
import { keySlot, SLOTS } from "./slots";

/**
 * Sharded pub/sub (SSUBSCRIBE) on a Redis Cluster: one subscribed connection per master that owns a
 * slot of a wanted channel, each channel subscribed on the master that owns its slot now.
 *
 * ioredis 5.8.2 has a `shardedSubscribers` option, not used here: its SSUBSCRIBE answered with MOVED
 * never settles, it adds a "ready" listener on every slot refresh, and it offers no way to tell
 * whether every channel is subscribed again after a failover. This class follows the topology
 * itself: after every slot refresh of the cluster client (every `slotsRefreshInterval`, and on MOVED)
 * it moves a channel whose slot changed owner to the new owner, and closes connections to nodes that
 * own nothing any more.
 *
 * When a slot leaves a node (failover, resharding) Redis 7 sends its subscribers an unrequested
 * `sunsubscribe`, which ioredis takes as the reply to the oldest command waiting on that connection.
 * So a connection whose node lost a slot of one of its channels, that reports a command queue out
 * of step, or that answers a PING with anything but a pong, is closed and opened again, and its
 * channels subscribed from scratch.
 *
 * Messages published while a channel moves are not received: "resubscribed" is emitted with the
 * channels once they are subscribed again, so the backplane's receivers read what they missed from
 * history without waiting for the room's next message.
 */
export class ShardSubscriber extends EventEmitter implements BackplaneSubscriber {
  /** Channels asked for, subscribed or not. */
  private readonly wanted = new Set<string>();
  private readonly nodes = new Map<string, NodeSubscription>();
  /**
   * Channels whose SSUBSCRIBE is sent and not answered yet, and the connection it was sent on: not
   * sent again meanwhile, unless that connection was replaced (ioredis never answers an SSUBSCRIBE
   * that got MOVED; it only times out).
   */
  private readonly inflight = new Map<string, NodeSubscription>();
  /** Wanted channels that were subscribed and are not any more: on their way to a new master. */
  private readonly lost = new Set<string>();
  /** How many of `lost` are in each slot, for slotInSync. */
  private readonly lostBySlot = new Map<number, number>();
  /** Master of each slot at the last reconcile ("" when the cluster client knows none). */
  private owners: string[] = [];
  private closed = false;
  private scheduled = false;
  private readonly probe: ReturnType<typeof setInterval>;

  constructor(
    private readonly cluster: Cluster,
    /** Connection options of every node (credentials, TLS, timeouts), as the cluster client's. */
    private readonly options: RedisOptions,
    private readonly hooks: { probeIntervalMs: number; onError: (error: Error) => void },
  ) {
    super();
    // Every subscribe still waiting for its shard listens for "reconciled" until it is held (and
    // then removes its listener): many rooms joining at once are many listeners, not a leak.
    this.setMaxListeners(0);
    cluster.on("refresh", () => this.schedule());
    cluster.on("ready", () => this.schedule());
    this.probe = setInterval(() => this.ping(), hooks.probeIntervalMs);
    this.probe.unref?.();
  }

  /**
   * "ready" while the cluster client is, every wanted channel's slot has a master, and every channel
   * that was subscribed is subscribed again (after its connection was lost or replaced, or its slot
   * moved). A channel whose first SSUBSCRIBE is in flight does not count (as on one Redis), nor does
   * a connection being opened for it. Cheap: called for every message.
   */
  get status(): string {
    return this.inSync() ? "ready" : "connecting";
  }

  /** Whether every wanted channel's master had a connection at the last reconcile. */
  private covered = true;

  /** Why the status is not "ready", for logs ("" when it is). */
  why(): string {
    if (this.closed) return "closed";
    if (this.cluster.status !== "ready") return `cluster client ${this.cluster.status}`;
    if (!this.covered) return "a channel's slot has no master";
    return this.lost.size > 0 ? `${this.lost.size} channels to subscribe again` : "";
  }

  private inSync(): boolean {
    return !this.closed && this.cluster.status === "ready" && this.covered && this.lost.size === 0;
  }

  /**
   * The same as status "ready", for the channels of one slot only: its master is known and none of
   * its channels is lost. Cheap: called for every message.
   */
  slotInSync(slot: number): boolean {
    return !this.closed && this.cluster.status === "ready" && Boolean(this.owners[slot]) && !this.lostBySlot.has(slot);
  }

  ready(channel: string): boolean {
    return this.slotInSync(keySlot(channel));
  }

  private markLost(channel: string) {
    if (this.lost.has(channel)) return;
    this.lost.add(channel);
    const slot = keySlot(channel);
    this.lostBySlot.set(slot, (this.lostBySlot.get(slot) ?? 0) + 1);
  }

  /** Whether the channel was lost. */
  private unmarkLost(channel: string): boolean {
    if (!this.lost.delete(channel)) return false;
    const slot = keySlot(channel);
    const left = (this.lostBySlot.get(slot) ?? 1) - 1;
    if (left > 0) this.lostBySlot.set(slot, left);
    else this.lostBySlot.delete(slot);
    return true;
  }

  /**
   * Resolves once every channel is subscribed on its master (a connection to a master not used yet
   * is opened first); rejects when that takes longer than the connect timeout. A channel stays
   * wanted either way, and is subscribed as soon as its master answers.
   */
  async subscribe(...channels: string[]) {
    for (const channel of channels) this.wanted.add(channel);
    const held = () => channels.every((c) => !this.wanted.has(c) || this.holder(c));
    await this.reconcile();
    if (held()) return;
    const deadline = Date.now() + (this.options.connectTimeout ?? 2000);
    while (!held()) {
      const left = deadline - Date.now();
      if (left <= 0 || this.closed)
        throw new Error(`not subscribed to ${channels.join(", ")} yet; subscribed when its shard answers`);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.off("reconciled", done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.on("reconciled", done);
      });
    }
  }

  async unsubscribe(...channels: string[]) {
    const bySlot = new Map<NodeSubscription, string[]>();
    for (const channel of channels) {
      this.wanted.delete(channel);
      this.unmarkLost(channel);
      const node = this.holder(channel);
      if (!node) continue;
      node.subscribed.delete(channel);
      push(bySlot, node, channel);
    }
    // One SUNSUBSCRIBE per slot: Redis refuses channels of several slots in one.
    const calls: Promise<unknown>[] = [];
    for (const [node, list] of bySlot)
      for (const group of groupBySlot(list).values()) calls.push(node.redis.sunsubscribe(...group));
    await Promise.all(calls);
  }

  async close() {
    this.closed = true;
    clearInterval(this.probe);
    await Promise.allSettled([...this.nodes.values()].map((n) => n.redis.quit()));
    for (const node of this.nodes.values()) node.redis.disconnect();
    this.nodes.clear();
  }

  /** Pings every connection in use: a connection that does not answer is cut by its socket timeout. */
  private ping() {
    for (const node of this.nodes.values()) {
      if (!node.ready) continue;
      node.redis.ping().then(
        (reply: unknown) => {
          // PING is answered "PONG", or ["pong", ""] once subscribed; anything else is a reply out of step.
          const pong = Array.isArray(reply) ? reply[0] : reply;
          if (String(pong).toLowerCase() !== "pong") this.recycle(node);
        },
        () => {},
      );
    }
    // Also retries channels whose SSUBSCRIBE failed.
    this.schedule();
  }

  private owner(channel: string): string | undefined {
    return this.owners[keySlot(channel)] || undefined;
  }

  /** Forgets what a connection held (closed, replaced, or its slots moved), remembering it was lost. */
  private drop(node: NodeSubscription, channels: Iterable<string> = node.subscribed) {
    for (const channel of [...channels]) {
      node.subscribed.delete(channel);
      if (this.wanted.has(channel)) this.markLost(channel);
    }
  }

  private holder(channel: string): NodeSubscription | undefined {
    for (const node of this.nodes.values()) if (node.subscribed.has(channel)) return node;
    return undefined;
  }

  private schedule() {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      void this.reconcile();
    });
  }

  /** Brings the subscriptions in line with the wanted channels and the cluster client's slot map. */
  private async reconcile() {
    if (this.closed) return;
    const previous = this.owners;
    // Runs on every slot refresh and every subscribe: one pass over the slots, and a set holding
    // each master once (a master's slots are mostly in runs), not a set built from 16,384 entries.
    const slots = this.cluster.slots;
    const owners = new Array<string>(SLOTS);
    const masters = new Set<string>();
    for (let slot = 0, last = ""; slot < SLOTS; slot++) {
      const owner = slots[slot]?.[0] ?? "";
      owners[slot] = owner;
      if (owner !== last && owner !== "") masters.add(owner);
      last = owner;
    }
    this.owners = owners;
    const stale: NodeSubscription[] = [];
    for (const [key, node] of [...this.nodes]) {
      if (!masters.has(key)) {
        this.nodes.delete(key);
        node.redis.disconnect();
        continue;
      }
      // A node that lost a slot of one of its channels has been sent an unrequested sunsubscribe.
      for (const channel of node.subscribed) {
        const slot = keySlot(channel);
        if (previous[slot] === key && this.owners[slot] !== key) {
          stale.push(node);
          break;
        }
      }
    }
    for (const node of stale) this.recycle(node);
    const toSubscribe = new Map<string, string[]>();
    let covered = true;
    for (const channel of this.wanted) {
      const owner = this.owner(channel);
      const holder = this.holder(channel);
      if (holder && holder.key === owner) continue;
      const sending = this.inflight.get(channel);
      if (sending && sending.key === owner && this.nodes.get(sending.key) === sending && sending.ready) continue;
      if (holder) this.drop(holder, [channel]);
      if (owner) push(toSubscribe, owner, channel);
      else covered = false;
    }
    this.covered = covered;
    const calls: Promise<void>[] = [];
    for (const [key, channels] of toSubscribe) {
      const node = this.node(key);
      if (!node.ready) continue;
      for (const group of groupBySlot(channels).values()) calls.push(this.ssubscribe(node, group));
    }
    await Promise.all(calls);
    this.emit("reconciled");
    this.emitIfReady();
  }

  private async ssubscribe(node: NodeSubscription, channels: string[]) {
    for (const channel of channels) this.inflight.set(channel, node);
    try {
      await node.redis.ssubscribe(...channels);
      // Still wanted, on a connection not replaced meanwhile, and this node still the owner.
      if (this.nodes.get(node.key) !== node || !node.ready) return;
      const back: string[] = [];
      for (const channel of channels)
        if (this.wanted.has(channel) && this.owner(channel) === node.key) {
          node.subscribed.add(channel);
          if (this.unmarkLost(channel)) back.push(channel);
        }
      if (back.length > 0) this.emit("resubscribed", back);
    } catch (error) {
      this.hooks.onError(error as Error);
      // MOVED: the slot map is stale. The cluster client refreshes it; this reconciles after.
      if ((error as Error).message?.startsWith("MOVED")) this.cluster.refreshSlotsCache();
    } finally {
      for (const channel of channels) if (this.inflight.get(channel) === node) this.inflight.delete(channel);
    }
  }

  private node(key: string): NodeSubscription {
    const existing = this.nodes.get(key);
    if (existing) return existing;
    const [host, port] = splitNodeKey(key);
    const redis = new Redis({
      ...this.options,
      host,
      port,
      connectionName: "chat-ssubscriber",
      // Channels are subscribed again by reconcile, on whichever node owns them then.
      autoResubscribe: false,
      lazyConnect: false,
    });
    const node: NodeSubscription = { key, redis, ready: false, subscribed: new Set() };
    redis.on("smessage", (channel: string, message: string) => {
      if (this.wanted.has(channel)) this.emit("message", channel, message);
    });
    redis.on("ready", () => {
      node.ready = true;
      this.schedule();
    });
    redis.on("close", () => {
      node.ready = false;
      this.drop(node);
      this.emitIfReady();
    });
    // ioredis emits "moved" (and leaves the command unanswered) when SSUBSCRIBE gets MOVED.
    redis.on("moved", () => {
      this.cluster.refreshSlotsCache();
      this.recycle(node);
    });
    redis.on("error", (error: Error) => {
      this.hooks.onError(error);
      // Most often the unrequested sunsubscribe of a slot that moved away: read the slot map again.
      if (error.message.startsWith("Command queue state error")) {
        this.cluster.refreshSlotsCache();
        this.recycle(node);
      }
    });
    this.nodes.set(key, node);
    return node;
  }

  /** Closes a connection whose replies may be out of step and opens it again, clean. */
  private recycle(node: NodeSubscription) {
    node.ready = false;
    this.drop(node);
    if (this.nodes.get(node.key) === node) this.nodes.delete(node.key);
    node.redis.disconnect();
    this.node(node.key);
  }

  private wasReady = false;

  private emitIfReady() {
    const ready = this.inSync();
    if (ready && !this.wasReady) this.emit("ready");
    this.wasReady = ready;
  }
}

interface NodeSubscription {
  key: string;
  redis: Redis;
  ready: boolean;
  /** Channels this connection is subscribed to on its node. */
  subscribed: Set<string>;
}

function push<K>(map: Map<K, string[]>, key: K, value: string) {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

function groupBySlot(channels: string[]): Map<number, string[]> {
  const groups = new Map<number, string[]>();
  for (const channel of channels) push(groups, keySlot(channel), channel);
  return groups;
}

/** "host:port" (the host may be an IPv6 address with colons). */
function splitNodeKey(key: string): [string, number] {
  const colon = key.lastIndexOf(":");
  return [key.slice(0, colon), Number(key.slice(colon + 1))];
}
