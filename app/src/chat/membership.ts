import type { Connection, RoomMembership } from "../connections/connection";
import { frames } from "../protocol/server-frames";
import { roomTopic } from "../rooms/topics";
import type { ChatDeps } from "./context";
import type { Delivery } from "./delivery";
import type { RoomSequencer } from "./sequencer";

/** A connection entering and leaving a room: subscription, where live delivery starts, presence. */
export class Memberships {
  constructor(
    private readonly deps: ChatDeps,
    private readonly sequencer: RoomSequencer,
    private readonly delivery: Delivery,
  ) {}

  async enter(connection: Connection, room: string): Promise<RoomMembership> {
    const memberships = connection.rooms;
    // Placeholder first so a concurrent frame sees the membership; filled in once the head is known.
    const membership: RoomMembership = { epoch: "", liveFrom: 0 };
    memberships.set(room, membership);
    // What this instance had delivered when the socket subscribed: everything after it reaches the
    // socket live, including what arrives while the head is being read, so a replay stops there.
    const atSubscribe = this.sequencer.state(room);
    await this.deps.rooms.add(connection, roomTopic(room));
    let head: Awaited<ReturnType<ChatDeps["history"]["head"]>>;
    try {
      head = await this.deps.history.head(room);
    } catch (error) {
      // History unreachable: the join is refused (`unavailable`), so the connection is not left in
      // a room it has no position in.
      memberships.delete(room);
      this.deps.rooms.remove(connection, roomTopic(room));
      throw error;
    }
    membership.epoch = head.epoch;
    if (atSubscribe && atSubscribe.epoch === head.epoch) {
      membership.liveFrom = atSubscribe.last;
    } else {
      // New to this instance: tracking starts at the stored head, or began during the wait with
      // the first message delivered live.
      this.sequencer.track(room, head.epoch, head.offset);
      const now = this.sequencer.state(room)!;
      membership.liveFrom = Math.min(now.from, head.offset);
    }
    if (await this.deps.presence.add(room, connection.userId, connection.id)) {
      this.delivery.publish(roomTopic(room), frames.presenceDiff(room, [connection.userId], []), "presence_diff");
    }
    return membership;
  }

  async leave(connection: Connection, room: string) {
    connection.rooms.delete(room);
    this.deps.rooms.remove(connection, roomTopic(room));
    await this.leavePresence(connection, room);
  }

  /** Takes the connection out of a room's presence (its subscription is already gone or never was). */
  async leavePresence(connection: Connection, room: string) {
    if (await this.deps.presence.remove(room, connection.userId, connection.id)) {
      this.delivery.publish(roomTopic(room), frames.presenceDiff(room, [], [connection.userId]), "presence_diff");
    }
  }
}
