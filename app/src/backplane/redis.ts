import type { Logger } from "../observability/logger";
import type { Metrics } from "../observability/metrics";
import type { BackplanePublisher, BackplaneSubscriber } from "../redis/clients";
import type { RedisKeys } from "../redis/keys";
import type { Backplane, Envelope } from "./backplane";

/**
 * Redis pub/sub backplane: one channel per topic. It takes its publishing and subscribing
 * connections from the caller. An envelope published while Redis is unreachable is dropped and
 * counted (backplane_dropped_total): room messages are stored in history and filled in from there
 * by receivers that notice the gap; typing, read and presence notices are transient by nature.
 */
export class RedisBackplane implements Backplane {
  readonly distributed = true;
  private readonly topics = new Set<string>();
  private handler: (envelope: Envelope) => void = () => {};
  private readonly channelPrefix: string;

  constructor(
    private readonly deps: {
      instanceId: string;
      /** PUBLISH on one Redis; SPUBLISH to the channel's shard on a cluster. */
      publisher: BackplanePublisher & { status?: string };
      /** One subscribed connection; on a cluster, one per master (SSUBSCRIBE). */
      subscriber: BackplaneSubscriber;
      keys: RedisKeys;
      metrics: Metrics;
      logger: Logger;
      /**
       * Whether Redis answers (both connections ready, none hung); with a channel, whether that
       * channel's shard does (see RedisClients.status). Defaults to both connections being ready.
       */
      isUp?: (channel?: string) => boolean;
      /** Told of every stored room message received, so the history store knows what was seen here. */
      observe?: (room: string, epoch: string, offset: number) => void;
    },
  ) {
    this.channelPrefix = deps.keys.channelPrefix();
    deps.subscriber.on("message", (channel: string, payload: string) => this.receive(channel, payload));
    deps.subscriber.on("ready", () => this.resubscribePending());
    deps.subscriber.on("resubscribed", (channels: string[]) => {
      for (const channel of channels) {
        const topic = this.topicOf.get(channel);
        if (topic !== undefined && this.topics.has(topic)) this.resubscribed(topic);
      }
    });
  }

  /** Topic of each channel subscribed, to name the topics of a "resubscribed". */
  private readonly topicOf = new Map<string, string>();
  private resubscribed: (topic: string) => void = () => {};

  onResubscribed(handler: (topic: string) => void) {
    this.resubscribed = handler;
  }

  publish(envelope: Omit<Envelope, "origin" | "sentAt" | "message"> & { frame: string }) {
    const { publisher, metrics, keys, instanceId } = this.deps;
    // Nothing is queued for a Redis that is down or hung: that is what would grow without bound.
    if (this.status(envelope.topic) !== "up") {
      metrics.backplaneDropped.inc();
      return;
    }
    const full: Envelope = { ...envelope, origin: instanceId, sentAt: Date.now() };
    metrics.backplanePublish.inc();
    publisher.publish(keys.channel(envelope.topic), JSON.stringify(full)).catch(() => {
      metrics.backplaneErrors.labels("publish").inc();
      metrics.backplaneDropped.inc();
    });
  }

  private receive(channel: string, payload: string) {
    if (!channel.startsWith(this.channelPrefix)) return;
    let envelope: Envelope;
    try {
      envelope = JSON.parse(payload);
    } catch {
      this.deps.metrics.backplaneErrors.labels("decode").inc();
      return;
    }
    // Stored room messages come back to their origin as well: that is how its own members get them
    // in the same order as every other instance.
    if ((envelope.origin === this.deps.instanceId && !envelope.message) || !this.topics.has(envelope.topic)) return;
    this.deps.metrics.backplaneLag.observe(Math.max(0, Date.now() - envelope.sentAt) / 1000);
    if (envelope.message && envelope.epoch !== undefined && envelope.offset !== undefined)
      this.deps.observe?.(envelope.message.room, envelope.epoch, envelope.offset);
    this.handler(envelope);
  }

  async subscribe(topic: string) {
    if (this.topics.has(topic)) return;
    this.topics.add(topic);
    this.topicOf.set(this.deps.keys.channel(topic), topic);
    const { subscriber } = this.deps;
    const channel = this.deps.keys.channel(topic);
    if (!(subscriber.ready ? subscriber.ready(channel) : subscriber.status === "ready")) {
      // Not an error: subscribed as soon as the connection is ready.
      this.pending.add(topic);
      return;
    }
    try {
      await subscriber.subscribe(channel);
    } catch (_error) {
      // Kept in `topics`: ioredis subscribes again on reconnect only channels it knows, so retry then.
      this.deps.metrics.backplaneErrors.labels("subscribe").inc();
      this.pending.add(topic);
    }
  }

  /** Topics whose SUBSCRIBE failed while Redis was down; sent again when it is back. */
  private readonly pending = new Set<string>();

  resubscribePending() {
    const topics = [...this.pending];
    this.pending.clear();
    if (topics.length === 0) return;
    this.deps.subscriber.subscribe(...topics.map((t) => this.deps.keys.channel(t))).catch(() => {
      for (const t of topics) this.pending.add(t);
    });
  }

  async unsubscribe(topic: string) {
    if (!this.topics.delete(topic)) return;
    this.topicOf.delete(this.deps.keys.channel(topic));
    this.pending.delete(topic);
    try {
      await this.deps.subscriber.unsubscribe(this.deps.keys.channel(topic));
    } catch {
      this.deps.metrics.backplaneErrors.labels("subscribe").inc();
    }
  }

  onEnvelope(handler: (envelope: Envelope) => void) {
    this.handler = handler;
  }

  status(topic?: string) {
    const up = this.deps.isUp
      ? this.deps.isUp(topic === undefined ? undefined : this.deps.keys.channel(topic))
      : this.deps.publisher.status === "ready" && this.deps.subscriber.status === "ready";
    return up ? ("up" as const) : ("down" as const);
  }

  async close() {
    this.topics.clear();
    this.topicOf.clear();
  }
}
