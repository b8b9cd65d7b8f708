/**
 * A token bucket: holds up to `burst` tokens and gains `ratePerSecond` of them each second.
 * Refilled lazily from elapsed time, so an idle bucket costs nothing.
 */
export class TokenBucket {
  private tokens: number;
  private updatedAt: number;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.updatedAt = now;
  }

  private refill(now: number) {
    if (now > this.updatedAt) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.updatedAt) * this.ratePerSecond) / 1000);
      this.updatedAt = now;
    }
  }

  take(now: number): boolean {
    this.refill(now);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Milliseconds until one token is available. */
  waitMs(now: number): number {
    this.refill(now);
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) * 1000) / this.ratePerSecond);
  }

  /** True when the bucket is back to full and can be forgotten. */
  full(now: number): boolean {
    this.refill(now);
    return this.tokens >= this.burst;
  }
}

/** One bucket per key (a client IP), forgetting buckets that refilled so memory stays bounded. */
export class KeyedLimiter {
  private readonly buckets = new Map<string, TokenBucket>();
  private lastPrune = 0;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes a token for `key`; returns 0 when allowed, else the ms to wait. */
  take(key: string): number {
    const now = this.now();
    this.prune(now);
    let bucket = this.buckets.get(key);
    if (!bucket) this.buckets.set(key, (bucket = new TokenBucket(this.ratePerSecond, this.burst, now)));
    return bucket.take(now) ? 0 : Math.max(1, bucket.waitMs(now));
  }

  get size() {
    return this.buckets.size;
  }

  private prune(now: number) {
    if (now - this.lastPrune < 10_000) return;
    this.lastPrune = now;
    for (const [key, bucket] of this.buckets) if (bucket.full(now)) this.buckets.delete(key);
  }
}
