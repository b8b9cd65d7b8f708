import type { Backplane } from "../backplane/backplane";
import type { Connection } from "../connections/connection";
import { roomTopic } from "./topics";

/** Publishes a frame to this instance's subscribers of a topic; returns how many sockets it reached. */
export interface LocalPublisher {
  publish(topic: string, frame: string): void;
  subscriberCount(topic: string): number;
}

interface LocalRoom {
  members: number;
  /** Pending release of the backplane subscription after the last local member left. */
  releaseTimer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * Local room membership. The first local member of a room subscribes this instance to the room's
 * backplane topic; the subscription is released `releaseDelayMs` after the last one leaves, so a
 * member who leaves and comes back (a reconnect) does not churn the subscription.
 */
export class RoomManager {
  private readonly rooms = new Map<string, LocalRoom>();

  constructor(
    private readonly backplane: Backplane,
    private readonly releaseDelayMs = 5000,
  ) {}

  get size() {
    return this.rooms.size;
  }

  localMembers(room: string) {
    return this.rooms.get(room)?.members ?? 0;
  }

  /** Subscribes the connection's socket to the room. Resolves once the backplane carries the room. */
  async add(connection: Connection, room: string): Promise<void> {
    const topic = roomTopic(room);
    connection.socket.subscribe(topic);
    let local = this.rooms.get(room);
    if (!local) {
      local = { members: 0, releaseTimer: undefined };
      this.rooms.set(room, local);
    }
    local.members++;
    if (local.releaseTimer) {
      clearTimeout(local.releaseTimer);
      local.releaseTimer = undefined;
    }
    if (local.members === 1) await this.backplane.subscribe(topic);
  }

  remove(connection: Connection, room: string) {
    const topic = roomTopic(room);
    if (!connection.closing) connection.socket.unsubscribe(topic);
    const local = this.rooms.get(room);
    if (!local) return;
    local.members--;
    if (local.members > 0) return;
    local.releaseTimer = setTimeout(() => {
      if (local.members > 0) return;
      this.rooms.delete(room);
      void this.backplane.unsubscribe(topic).catch(() => {});
    }, this.releaseDelayMs);
    local.releaseTimer.unref?.();
  }

  close() {
    for (const local of this.rooms.values()) if (local.releaseTimer) clearTimeout(local.releaseTimer);
    this.rooms.clear();
  }
}
