/**
 * A random identifier of 32 hex digits after `prefix`. Uses getRandomValues, which (unlike
 * randomUUID) browsers also offer to pages served over plain http.
 */
export function randomId(prefix = ""): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  let hex = "";
  for (const b of bytes) hex += b.toString(16).padStart(2, "0");
  return prefix + hex;
}

/** The most recent `capacity` keys seen; the oldest is forgotten first. */
export class RecentKeys {
  private readonly keys = new Set<string>();

  constructor(private readonly capacity: number) {}

  /** Records `key`; returns false if it was already among the recent keys. */
  add(key: string): boolean {
    if (this.keys.has(key)) return false;
    this.keys.add(key);
    if (this.keys.size > this.capacity) this.keys.delete(this.keys.values().next().value!);
    return true;
  }

  get size() {
    return this.keys.size;
  }
}
