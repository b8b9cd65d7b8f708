/**
 * Lets work through at most `budget` units per event-loop turn, in the order it asked, the rest in
 * the following turns. A commit of a few thousand messages is settled all at once; fanning them
 * out in one turn would put megabytes on every member's socket before the loop writes any of it
 * out, past BACKPRESSURE_LIMIT_BYTES, where frames for a client that reads at full speed would be
 * dropped. Spread over turns (a timer, so that the loop polls and writes the sockets out between
 * slices; an immediate ran again before the writes), each socket is flushed between slices, as
 * when messages arrive one by one.
 *
 * Work is a callback, not a promise: a commit releases hundreds of messages in one loop, and a
 * promise each (with the turn of the microtask queue its await costs) was a measurable share of
 * the event loop's time per stored message.
 */
export class TurnPacer {
  private used = 0;
  /** Units and callbacks of the work waiting for a later turn, flat: [units, go, units, go, ...]. */
  private waiting: (number | (() => void))[] = [];
  private head = 0;
  private scheduled = false;

  constructor(private readonly budget: number) {}

  /**
   * Runs `go` now while the budget lasts (and nothing waits before it), else in a later turn.
   * Returns whether it ran now.
   */
  admit(units: number, go: () => void): boolean {
    this.schedule();
    if (this.head === this.waiting.length && (this.used === 0 || this.used + units <= this.budget)) {
      this.used += units;
      go();
      return true;
    }
    this.waiting.push(units, go);
    return false;
  }

  private schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    setTimeout(() => this.nextTurn(), 0);
  }

  private nextTurn() {
    this.scheduled = false;
    this.used = 0;
    const waiting = this.waiting;
    while (this.head < waiting.length) {
      const units = waiting[this.head] as number;
      if (this.used > 0 && this.used + units > this.budget) break;
      const go = waiting[this.head + 1] as () => void;
      this.head += 2;
      this.used += units;
      go();
    }
    if (this.head === waiting.length) {
      this.waiting = [];
      this.head = 0;
    }
    if (this.used > 0) this.schedule();
  }
}
