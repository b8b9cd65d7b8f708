import type { Backplane } from "../backplane/backplane";
import type { Connection } from "../connections/connection";

/**
 * This instance's sockets in a topic: native publish for plain sockets, joined frames per turn for
 * batched ones (see FrameBatcher).
 */
export interface LocalPublisher {
  publish(topic: string, frame: string): void;
  /** Like publish, but the sender does not get the frame. */
  publishFromSender(sender: Connection, topic: string, frame: string): void;
  subscriberCount(topic: string): number;
  subscribe(connection: Connection, topic: string): void;
  /** A closing connection is only counted out: Bun drops a closed socket's subscriptions. */
  unsubscribe(connection: Connection, topic: string): void;
}

interface LocalTopic {
  members: number;
  /** Pending release of the backplane subscription after the last local member left. */
  releaseTimer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * Local subscriptions to room and user topics. The first local subscriber of a topic subscribes this
 * instance to it on the backplane; the subscription is released `releaseDelayMs` after the last one
 * leaves, so a member who leaves and comes back (a reconnect) does not churn it.
 */
export class RoomManager {
  private readonly topics = new Map<string, LocalTopic>();

  constructor(
    private readonly backplane: Backplane,
    private readonly local: Pick<LocalPublisher, "subscribe" | "unsubscribe">,
    private readonly releaseDelayMs = 5000,
    /** Told when this instance stops carrying a topic. */
    private readonly onReleased: (topic: string) => void = () => {},
  ) {}

  get size() {
    return this.topics.size;
  }

  localMembers(topic: string) {
    return this.topics.get(topic)?.members ?? 0;
  }

  /** Subscribes the connection's socket to the topic. Resolves once the backplane carries it. */
  add(connection: Connection, topic: string): Promise<void> {
    this.local.subscribe(connection, topic);
    return this.acquire(topic);
  }

  remove(connection: Connection, topic: string) {
    this.local.unsubscribe(connection, topic);
    this.release(topic);
  }

  /**
   * Counts one more local interest in a topic without a socket subscription (user topics are
   * delivered through the registry: a native topic per user costs about 1.5 KB per connection).
   */
  async acquire(topic: string): Promise<void> {
    let local = this.topics.get(topic);
    if (!local) {
      local = { members: 0, releaseTimer: undefined };
      this.topics.set(topic, local);
    }
    local.members++;
    if (local.releaseTimer) {
      clearTimeout(local.releaseTimer);
      local.releaseTimer = undefined;
    }
    if (local.members === 1) await this.backplane.subscribe(topic);
  }

  release(topic: string) {
    const local = this.topics.get(topic);
    if (!local) return;
    local.members--;
    if (local.members > 0) return;
    local.releaseTimer = setTimeout(() => {
      if (local.members > 0) return;
      this.topics.delete(topic);
      this.onReleased(topic);
      void this.backplane.unsubscribe(topic).catch(() => {});
    }, this.releaseDelayMs);
    local.releaseTimer.unref?.();
  }

  close() {
    for (const local of this.topics.values()) if (local.releaseTimer) clearTimeout(local.releaseTimer);
    this.topics.clear();
  }
}
