import type { LocalPublisher } from "../rooms/rooms";
import { batchedTopic } from "../rooms/topics";
import type { Connection } from "./connection";

/** The native side of Bun's server: one publish reaches every socket subscribed to a topic. */
export interface NativePublisher {
  publish(topic: string, data: string): unknown;
  subscriberCount(topic: string): number;
}

export interface BatchLimits {
  /** Most frames joined into one WebSocket frame (BATCH_MAX_FRAMES). */
  maxFrames: number;
  /** Largest joined WebSocket frame in UTF-8 bytes (BATCH_MAX_BYTES); a larger single frame goes alone. */
  maxBytes: number;
}

/** Frames waiting for the end of this event-loop turn, for one connection or one topic's batched members. */
export class Batch {
  readonly frames: string[] = [];
  bytes = 0;
  sent = false;

  constructor(
    readonly connection: Connection | undefined,
    readonly topic: LocalTopic | undefined,
  ) {}
}

/**
 * A topic with members here. Plain members are subscribed to the topic itself; batched ones to its
 * batched twin (`name`), which gets joined frames. The counts spare a native call (which encodes the
 * topic and the frame) for a kind of member the topic does not have.
 */
interface LocalTopic {
  readonly name: string;
  plain: number;
  batchedMembers: number;
  batch: Batch | undefined;
}

/**
 * Local fan-out for two kinds of sockets in the same topics. Sockets that did not ask for batched
 * frames are subscribed to the topic itself and get every frame at once, as a WebSocket frame of its
 * own (one native publish per frame, exactly as without batching). Sockets that asked are subscribed
 * to the topic's batched twin: the frames one event-loop turn publishes to the topic are joined with
 * `\n` and published to the twin once, at the end of the turn or when a batch reaches the count or
 * size cap. Frames for one batched connection alone (answers, errors, replays, direct messages) are
 * joined the same way and sent with one `send`.
 *
 * Guarantees: frames of one topic reach a batched socket in the order they were published, and the
 * frames for one connection in the order they were sent; a batch is never split across turns out of
 * order. Frames published before a batched socket subscribes never reach it, and frames published
 * before it unsubscribes do (the pending batch is sent first), as with a plain socket. A connection's
 * pending frames are sent before it is closed.
 */
export class FrameBatcher implements LocalPublisher {
  private readonly topics = new Map<string, LocalTopic>();
  /** Batches of this turn in the order of their first frame; sent at the end of the turn. */
  private due: Batch[] = [];
  private scheduled = false;
  private readonly endOfTurn = () => this.flush();

  constructor(
    private readonly native: NativePublisher,
    readonly limits: BatchLimits,
    private readonly schedule: (task: () => void) => void = setImmediate,
  ) {}

  /** Subscribers of a topic on this instance, plain and batched. */
  subscriberCount(topic: string): number {
    const local = this.topics.get(topic);
    return local ? local.plain + local.batchedMembers : 0;
  }

  /** Publishes a frame to every subscriber of a topic here: plain ones now, batched ones at the end of the turn. */
  publish(topic: string, frame: string) {
    const local = this.topics.get(topic);
    if (!local) return;
    if (local.plain > 0) this.native.publish(topic, frame);
    if (local.batchedMembers > 0) this.add(local, undefined, frame);
  }

  /** Publishes to a topic's subscribers except the sender (its own typing or read frame). */
  publishFromSender(sender: Connection, topic: string, frame: string) {
    const local = this.topics.get(topic);
    if (sender.batcher) {
      // The sender cannot be left out of a joined frame: what is pending goes first, then this frame
      // alone through the sender's own publish, which skips the sender.
      if (!local) return;
      if (local.batch) this.send(local.batch);
      sender.socket.publish(local.name, frame);
      if (local.plain > 0) this.native.publish(topic, frame);
      return;
    }
    sender.socket.publish(topic, frame);
    if (local && local.batchedMembers > 0) this.add(local, undefined, frame);
  }

  /** Sends a frame to one batched connection, joined with the others it gets in this turn. */
  sendTo(connection: Connection, frame: string) {
    this.add(undefined, connection, frame);
  }

  /** Subscribes a socket to a topic (to its batched twin for a batched connection). */
  subscribe(connection: Connection, topic: string) {
    let local = this.topics.get(topic);
    if (!local) {
      local = { name: batchedTopic(topic), plain: 0, batchedMembers: 0, batch: undefined };
      this.topics.set(topic, local);
    }
    if (!connection.batcher) {
      local.plain++;
      connection.socket.subscribe(topic);
      return;
    }
    if (local.batch) {
      // Published before this socket subscribed: it must not reach it (a replay covers it).
      this.send(local.batch);
    }
    local.batchedMembers++;
    connection.socket.subscribe(local.name);
  }

  /** Unsubscribes a socket; a closing socket is only counted out (Bun drops its subscriptions itself). */
  unsubscribe(connection: Connection, topic: string) {
    const local = this.topics.get(topic);
    if (!connection.batcher) {
      if (!connection.closing) connection.socket.unsubscribe(topic);
      if (local) local.plain--;
    } else if (local) {
      // Published while this socket was subscribed: it still gets it, as a plain socket would have.
      if (local.batch) this.send(local.batch);
      if (!connection.closing) connection.socket.unsubscribe(local.name);
      local.batchedMembers--;
    }
    if (local && local.plain <= 0 && local.batchedMembers <= 0) this.topics.delete(topic);
  }

  /** Sends a connection's pending frames now (before it is closed). */
  flushConnection(connection: Connection) {
    if (connection.batch) this.send(connection.batch);
  }

  /** Sends every pending batch, in the order of their first frame. */
  flush() {
    this.scheduled = false;
    const due = this.due;
    this.due = [];
    for (const batch of due) this.send(batch);
  }

  private add(topic: LocalTopic | undefined, connection: Connection | undefined, frame: string) {
    const { maxFrames, maxBytes } = this.limits;
    const size = Buffer.byteLength(frame);
    let batch = topic ? topic.batch : connection!.batch;
    if (batch && batch.bytes + 1 + size > maxBytes) {
      this.send(batch);
      batch = undefined;
    }
    if (!batch) {
      batch = new Batch(connection, topic);
      if (topic) topic.batch = batch;
      else connection!.batch = batch;
      this.due.push(batch);
      if (!this.scheduled) {
        this.scheduled = true;
        this.schedule(this.endOfTurn);
      }
      batch.bytes = size;
    } else {
      batch.bytes += 1 + size;
    }
    batch.frames.push(frame);
    if (batch.frames.length >= maxFrames) this.send(batch);
  }

  private send(batch: Batch) {
    if (batch.sent) return;
    batch.sent = true;
    const frames = batch.frames;
    // JSON text never holds a raw newline (JSON.stringify escapes it), so `\n` separates frames safely.
    const text = frames.length === 1 ? frames[0]! : frames.join("\n");
    const { connection, topic } = batch;
    if (topic) {
      if (topic.batch === batch) topic.batch = undefined;
      this.native.publish(topic.name, text);
    } else if (connection) {
      if (connection.batch === batch) connection.batch = undefined;
      connection.socket.send(text);
    }
  }
}
