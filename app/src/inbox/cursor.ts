/** Offsets a connection remembers having been sent (per connection that got a direct message). */
const REMEMBERED = 256;

/**
 * What one connection has been sent of its user's inbox, so that a direct message reaches it once
 * although it may arrive both live (published after the append) and in the resume replay (read
 * from the store), in either order. Bounded: the most recent REMEMBERED offsets and a floor (the
 * client's resume point, below which it holds everything).
 */
export class InboxCursor {
  private epoch: string | undefined;
  private floor = 0;
  private readonly sent = new Set<number>();

  /** Whether the entry at `offset` of `epoch` is new to this connection; it counts as sent from now. */
  admit(epoch: string, offset: number): boolean {
    if (epoch !== this.epoch) this.restart(epoch);
    if (offset <= this.floor || this.sent.has(offset)) return false;
    this.sent.add(offset);
    if (this.sent.size > REMEMBERED) this.sent.delete(this.sent.values().next().value!);
    return true;
  }

  /** The client holds every entry up to `floor` of `epoch`. */
  resume(epoch: string, floor: number) {
    if (epoch !== this.epoch) this.restart(epoch);
    if (floor > this.floor) this.floor = floor;
  }

  private restart(epoch: string) {
    this.epoch = epoch;
    this.floor = 0;
    this.sent.clear();
  }
}
