import type { Envelope } from "../backplane/backplane";
import type { Connection } from "../connections/connection";
import { frames } from "../protocol/server-frames";
import { BROADCAST_TOPIC, roomTopic } from "../rooms/topics";
import type { ChatDeps } from "./context";
import type { RoomSequencer } from "./sequencer";

/**
 * Fan-out: frames to this instance's sockets and to other instances through the backplane, and
 * what arrives from the backplane to the sockets here (room messages through the sequencer).
 */
export class Delivery {
  constructor(
    private readonly deps: ChatDeps,
    private readonly sequencer: RoomSequencer,
  ) {}

  /** Fans a frame out to this instance's subscribers (one native publish) and to other instances. */
  publish(topic: string, frame: string, type: string) {
    this.deps.metrics.countOut(type, this.deliverLocal(topic, frame));
    this.deps.backplane.publish({ topic, frame });
  }

  /** Like publish, but the sending socket does not get its own typing or read frame back. */
  publishFromSender(connection: Connection, room: string, frame: string, type: string) {
    const topic = roomTopic(room);
    this.deps.local.publishFromSender(connection, topic, frame);
    this.deps.metrics.countOut(type, Math.max(0, this.deps.local.subscriberCount(topic) - 1));
    this.deps.backplane.publish({ topic, frame });
  }

  deliverRemote(envelope: Envelope) {
    const { metrics } = this.deps;
    if (envelope.offset !== undefined && envelope.epoch !== undefined && envelope.topic.startsWith("room:")) {
      const frame = envelope.frame ?? frames.message(envelope.message!);
      this.sequencer.offer(envelope.topic.slice(5), envelope.epoch, envelope.offset, frame);
      return;
    }
    if (envelope.frame) metrics.countOut("remote", this.deliverLocal(envelope.topic, envelope.frame));
  }

  /**
   * Delivers a frame to this instance's sockets on a topic; returns how many. Rooms use Bun's
   * native publish; a user's sockets and the broadcast go through the registry, as they have no
   * native topic (rare frames, and a topic per user costs more memory than the index).
   */
  private deliverLocal(topic: string, frame: string): number {
    const { local, registry } = this.deps;
    if (topic.startsWith("user:")) {
      const sockets = registry.forUser(topic.slice(5));
      for (const connection of sockets) connection.send(frame);
      return sockets.length;
    }
    if (topic === BROADCAST_TOPIC) {
      for (const connection of registry.values()) connection.send(frame);
      return registry.size;
    }
    local.publish(topic, frame);
    return local.subscriberCount(topic);
  }
}
