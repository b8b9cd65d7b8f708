import type { Envelope } from "../backplane/backplane";
import type { Connection } from "../connections/connection";
import { InboxCursor } from "../inbox/cursor";
import type { InboxEntry } from "../inbox/inbox";
import { frames } from "../protocol/server-frames";
import { BROADCAST_TOPIC, roomTopic, userTopic } from "../rooms/topics";
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

  /** Fans an inbox entry out to its owner's connections, here and on other instances. */
  publishDirect(owner: string, epoch: string, entry: InboxEntry) {
    const frame = frames.direct(entry, epoch);
    this.deps.metrics.countOut("direct", this.deliverDirect(owner, epoch, entry.offset, frame));
    this.deps.backplane.publish({ topic: userTopic(owner), frame, epoch, offset: entry.offset });
  }

  /** Sends an inbox entry to each connection of `owner` here that was not sent it yet (live or by resume). */
  deliverDirect(owner: string, epoch: string, offset: number, frame: string): number {
    let sent = 0;
    for (const connection of this.deps.registry.forUser(owner)) {
      if (!(connection.inbox ??= new InboxCursor()).admit(epoch, offset)) continue;
      connection.send(frame);
      sent++;
    }
    return sent;
  }

  deliverRemote(envelope: Envelope) {
    const { metrics } = this.deps;
    const { topic, epoch, offset, frame } = envelope;
    if (epoch !== undefined && offset !== undefined && frame && topic.startsWith("user:")) {
      metrics.countOut("remote", this.deliverDirect(topic.slice(5), epoch, offset, frame));
      return;
    }
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
