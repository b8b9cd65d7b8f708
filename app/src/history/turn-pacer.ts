/**
 * Lets work through at most `budget` units per event-loop turn, in the order it asked, the rest in
 * the following turns. A commit of a few thousand messages resolves them all at once; fanning them
 * out in one turn would put megabytes on every member's socket before the loop writes any of it
 * out, past BACKPRESSURE_LIMIT_BYTES, where frames for a client that reads at full speed would be
 * dropped. Spread over turns (a timer, so that the loop polls and writes the sockets out between
 * slices; an immediate ran again before the writes), each socket is flushed between slices, as
 * when messages arrive one by one.
 */
export class TurnPacer {
  private used = 0;
  private readonly waiting: { units: number; resolve: () => void }[] = [];
  private scheduled = false;

  constructor(private readonly budget: number) {}

  /** Resolves in this turn while the budget lasts (and nothing waits before it), else in a later one. */
  admit(units: number): Promise<void> | undefined {
    if (this.waiting.length === 0 && (this.used === 0 || this.used + units <= this.budget)) {
      this.used += units;
      this.schedule();
      return undefined;
    }
    this.schedule();
    return new Promise((resolve) => this.waiting.push({ units, resolve }));
  }

  private schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    setTimeout(() => this.nextTurn(), 0);
  }

  private nextTurn() {
    this.scheduled = false;
    this.used = 0;
    while (this.waiting.length > 0) {
      const next = this.waiting[0]!;
      if (this.used > 0 && this.used + next.units > this.budget) break;
      this.waiting.shift();
      this.used += next.units;
      next.resolve();
    }
    if (this.used > 0) this.schedule();
  }
}
