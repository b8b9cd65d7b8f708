/** Where a client is in its user's direct-message inbox: what it sends in `inbox {lastOffset, epoch}`. */
export interface InboxPosition {
  epoch: string;
  offset: number;
}

/** Out-of-order offsets remembered above the position; past this the lowest is let go. */
const MAX_AHEAD = 1_000;

/**
 * The inbox position to resume from. It only moves over offsets the client holds every entry up
 * to, so a resume never skips a direct message: the answer to `inbox` sets it (everything up to the
 * inbox's newest offset was sent before it), and later live entries move it when they are the next
 * offset (ones that arrive out of order wait in `ahead`). Entries before the answer do not move it:
 * they may be replayed by the next resume, and the client drops them as already seen.
 */
export class InboxTracker {
  private epoch: string | undefined;
  private offset = 0;
  private readonly ahead = new Set<number>();
  /** The current connection's resume was answered. */
  private resumed = false;

  constructor(from?: InboxPosition) {
    if (from) {
      this.epoch = from.epoch;
      this.offset = from.offset;
    }
  }

  get position(): InboxPosition | undefined {
    return this.epoch === undefined ? undefined : { epoch: this.epoch, offset: this.offset };
  }

  /** The fields of the next `inbox` frame: from the position, or every kept message when there is none. */
  resumeFrame(): { type: "inbox"; lastOffset: number; epoch?: string } {
    return this.epoch === undefined
      ? { type: "inbox", lastOffset: 0 }
      : { type: "inbox", lastOffset: this.offset, epoch: this.epoch };
  }

  /** The connection is gone: until the next answer, entries do not move the position. */
  disconnected() {
    this.resumed = false;
    this.ahead.clear();
  }

  answered(epoch: string, offset: number) {
    if (epoch !== this.epoch) this.ahead.clear();
    this.epoch = epoch;
    this.offset = offset;
    this.resumed = true;
    this.advance();
  }

  received(epoch: string | undefined, offset: number | undefined) {
    if (!this.resumed || epoch !== this.epoch || offset === undefined || offset <= this.offset) return;
    this.ahead.add(offset);
    if (this.ahead.size > MAX_AHEAD) this.ahead.delete(Math.min(...this.ahead));
    this.advance();
  }

  private advance() {
    for (const offset of this.ahead) if (offset <= this.offset) this.ahead.delete(offset);
    while (this.ahead.delete(this.offset + 1)) this.offset++;
  }
}
