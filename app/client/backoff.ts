/** Bounds of the wait between reconnect attempts. */
export interface BackoffOptions {
  /** The shortest wait, and the base of the exponential ceiling. */
  minMs: number;
  /** The longest wait. */
  maxMs: number;
}

export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = Object.freeze({ minMs: 1_000, maxMs: 30_000 });

/** The longest wait before retry number `attempt` (0 for the first): minMs * 2^(attempt+1), at most maxMs. */
export function backoffCeiling(attempt: number, options: BackoffOptions): number {
  const exponent = Math.min(Math.max(attempt, 0) + 1, 30);
  return Math.max(options.minMs, Math.min(options.maxMs, options.minMs * 2 ** exponent));
}

/**
 * The wait before retry number `attempt`: full jitter between minMs and the exponential ceiling,
 * so clients dropped together spread out instead of returning in waves. Always within
 * [minMs, maxMs].
 */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const ceiling = backoffCeiling(attempt, options);
  return Math.round(options.minMs + random() * (ceiling - options.minMs));
}
