import type { Backplane, Envelope } from "./backplane";

/**
 * Connects instances living in one process. The default backplane is a hub with a single member,
 * where publishing reaches nobody else; tests put several app instances on one hub.
 */
export class MemoryHub {
  private readonly members = new Set<MemoryBackplane>();

  join(member: MemoryBackplane) {
    this.members.add(member);
  }

  leave(member: MemoryBackplane) {
    this.members.delete(member);
  }

  get size() {
    return this.members.size;
  }

  deliver(envelope: Envelope) {
    for (const member of this.members) member.receive(envelope);
  }
}

export class MemoryBackplane implements Backplane {
  private readonly topics = new Set<string>();
  private handler: (envelope: Envelope) => void = () => {};
  private readonly hub: MemoryHub;
  /** Only a hub handed in (tests joining several instances) has other members. */
  readonly distributed: boolean;

  constructor(
    private readonly instanceId: string,
    hub?: MemoryHub,
  ) {
    this.distributed = hub !== undefined;
    this.hub = hub ?? new MemoryHub();
    this.hub.join(this);
  }

  publish(envelope: Omit<Envelope, "origin" | "sentAt" | "message"> & { frame: string }) {
    if (this.hub.size < 2) return;
    const full: Envelope = { ...envelope, origin: this.instanceId, sentAt: Date.now() };
    // Delivered on a later tick, as a network transport would, so callers never re-enter.
    queueMicrotask(() => this.hub.deliver(full));
  }

  receive(envelope: Envelope) {
    if (envelope.origin !== this.instanceId && this.topics.has(envelope.topic)) this.handler(envelope);
  }

  async subscribe(topic: string) {
    this.topics.add(topic);
  }

  async unsubscribe(topic: string) {
    this.topics.delete(topic);
  }

  onEnvelope(handler: (envelope: Envelope) => void) {
    this.handler = handler;
  }

  status() {
    return "up" as const;
  }

  async close() {
    this.hub.leave(this);
    this.topics.clear();
  }
}
