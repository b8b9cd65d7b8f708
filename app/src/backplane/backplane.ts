import type { RoomMessage } from "../protocol/server-frames";

/** A frame crossing instances: the local topic to publish it on, and who sent it. */
export interface Envelope {
  /** Instance that published it; an instance ignores its own envelopes. */
  origin: string;
  topic: string;
  /** Server frame JSON, delivered unchanged to the topic's local subscribers. */
  frame?: string;
  /**
   * A stored room message, published by the history store in the same step as the write: every
   * instance receives these, its own included, and builds the `message` frame itself.
   */
  message?: RoomMessage;
  /** Room epoch and offset carried by `message` frames, so a receiver can notice a gap. */
  epoch?: string;
  offset?: number;
  /** Publish time in ms since the epoch, for backplane lag. */
  sentAt: number;
}

/**
 * Carries frames between the instances of one deployment.
 * Guarantees: envelopes published on one topic by one instance arrive at every other subscribed
 * instance in publish order, at most once; an instance never receives its own envelopes. Delivery is
 * best effort: an envelope published while the transport is down may be lost (history fills gaps).
 */
export interface Backplane {
  /** Room messages published by the history store arrive through `onEnvelope` too. */
  /** False when no other instance can be reached (the default single-process backplane). */
  readonly distributed: boolean;
  publish(envelope: Omit<Envelope, "origin" | "sentAt" | "message"> & { frame: string }): void;
  /** Start receiving a topic's envelopes (idempotent). */
  subscribe(topic: string): Promise<void>;
  unsubscribe(topic: string): Promise<void>;
  onEnvelope(handler: (envelope: Envelope) => void): void;
  /**
   * Called with a topic whose subscription was lost and is back (a failover, a slot moved to
   * another shard): envelopes published meanwhile were not received.
   */
  onResubscribed?(handler: (topic: string) => void): void;
  /**
   * "up", or "down" while the transport is unreachable. With a topic: whether that topic's part of
   * it is reachable (on a Redis Cluster, the shard of its channel).
   */
  status(topic?: string): "up" | "down";
  close(): Promise<void>;
}
