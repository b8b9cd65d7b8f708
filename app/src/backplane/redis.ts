import type { Logger } from "../observability/logger";
import type { Metrics } from "../observability/metrics";
import type { BackplanePublisher, BackplaneSubscriber } from "../redis/clients";
import type { RedisKeys } from "../redis/keys";
import type { Backplane, Envelope } from "./backplane";
import { decodeEnvelope, encodeEnvelope } from "./envelope";
import type { EnvelopeVersions } from "./versions";

/**
 * Redis pub/sub backplane: one channel per topic, envelopes as in envelope.ts. It takes its
 * publishing and subscribing connections from the caller. An envelope published while Redis is
 * unreachable is dropped and counted (backplane_dropped_total): room messages are stored in history
 * and filled in from there by receivers that notice the gap; typing, read and presence notices are
 * transient by nature.
 */
export class RedisBackplane implements Backplane {
  readonly distributed = true;
  private readonly topics = new Set<string>();
  private handler: (envelope: Envelope) => void = () => {};

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
      /** The envelope version to publish in (receiving takes every version in READ_VERSIONS). */
      versions: EnvelopeVersions;
      /** Told of every stored room message received, so the history store knows what was seen here. */
      observe?: (room: string, epoch: string, offset: number) => void;
    },
  ) {
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
    const payload = encodeEnvelope(this.deps.versions.version(), {
      ...envelope,
      origin: instanceId,
      sentAt: Date.now(),
    });
    metrics.backplanePublish.inc();
    publisher.publish(keys.channel(envelope.topic), payload).catch(() => {
      metrics.backplaneErrors.labels("publish").inc();
      metrics.backplaneDropped.inc();
    });
  }

  private receive(channel: string, payload: string) {
    const topic = this.topicOf.get(channel);
    if (topic === undefined || !this.topics.has(topic)) return;
    const envelope = decodeEnvelope(payload);
    if (!envelope) {
      this.deps.metrics.backplaneErrors.labels("decode").inc();
      return;
    }
    // Stored room messages come back to their origin as well: that is how its own members get them
    // in the same order as every other instance.
    if (envelope.origin === this.deps.instanceId && !envelope.stored) return;
    this.deps.metrics.backplaneLag.observe(Math.max(0, Date.now() - envelope.sentAt) / 1000);
    const { origin, sentAt, epoch, offset, frames } = envelope;
    if (envelope.message) {
      if (epoch !== undefined && offset !== undefined) this.deps.observe?.(envelope.message.room, epoch, offset);
      this.handler({ origin, topic, sentAt, epoch, offset, message: envelope.message });
      return;
    }
    if (!frames) return;
    if (envelope.stored && epoch !== undefined && offset !== undefined)
      this.deps.observe?.(topic.slice(5), epoch, offset + frames.length - 1);
    for (let k = 0; k < frames.length; k++)
      this.handler({
        origin,
        topic,
        sentAt,
        epoch,
        offset: offset === undefined ? undefined : offset + k,
        frame: frames[k],
      });
  }

  async subscribe(topic: string) {
    if (this.topics.has(topic)) return;
    this.topics.add(topic);
    const { subscriber } = this.deps;
    const channel = this.deps.keys.channel(topic);
    this.topicOf.set(channel, topic);
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
