// Log entries as Redis stores them, handed to the database without parsing them. The append scripts
// (room logs and inboxes) store each entry as the JSON of a flat object of strings and numbers with
// its offset first: `{"offset":<n>,...,"ts":<ms>,...}`. The write-behind reads a few fields of it by
// position and joins the entries into one JSON parameter of the insert, so a pass of thousands of
// entries spends no JSON.parse or JSON.stringify on them on the instance's event loop.

/** One log's entries taken by a write-behind pass, oldest first. */
export interface StoredEntries {
  /** The room, or the inbox's owner. */
  owner: string;
  epoch: string;
  /** Each entry's JSON as stored. */
  entries: string[];
}

const OFFSET_PREFIX = '{"offset":';

/** The entry's offset: the number the append script wrote first. */
export function offsetOf(entry: string): number {
  if (entry.startsWith(OFFSET_PREFIX)) return Number(entry.slice(OFFSET_PREFIX.length, entry.indexOf(",")));
  return (JSON.parse(entry) as { offset: number }).offset;
}

/**
 * The entry's `ts`. The key `"ts":` cannot occur inside a string value: a quote there is always
 * escaped (`\"`), so the first match is the key.
 */
export function tsOf(entry: string): number | undefined {
  const at = entry.indexOf('"ts":');
  if (at < 0) return undefined;
  const ts = Number.parseInt(entry.slice(at + 5, at + 25), 10);
  return Number.isNaN(ts) ? undefined : ts;
}

/**
 * Matches a JSON escape of a surrogate (`\ud800` to `\udfff`). JSON.stringify writes a lone
 * surrogate (a chat text may hold one) as such an escape, and a well-formed pair as the character
 * itself, so entries without a match (nearly all) need no check. A text holding a literal backslash
 * followed by such letters matches too; it is only checked for nothing.
 */
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;

/**
 * The batch as one JSON array text of `{"o": owner, "e": epoch, "m": [entry, ...]}`, the entries
 * joined as stored. PostgreSQL refuses a lone surrogate in JSON: an entry that may hold one is
 * parsed and its strings made well formed (U+FFFD), as a text parameter stored them before.
 */
export function storedBatchJson(batch: readonly StoredEntries[]): string {
  const groups: string[] = [];
  for (const { owner, epoch, entries } of batch) {
    if (entries.length === 0) continue;
    const clean = entries.map((entry) => (SURROGATE_ESCAPE.test(entry) ? wellFormedEntry(entry) : entry));
    groups.push(
      `{"o":${JSON.stringify(wellFormed(owner))},"e":${JSON.stringify(wellFormed(epoch))},"m":[${clean.join(",")}]}`,
    );
  }
  return `[${groups.join(",")}]`;
}

function wellFormedEntry(entry: string): string {
  const fields = JSON.parse(entry) as Record<string, unknown>;
  for (const [key, value] of Object.entries(fields)) if (typeof value === "string") fields[key] = wellFormed(value);
  return JSON.stringify(fields);
}

/** A lone surrogate becomes U+FFFD; strings without one are returned as they are. */
export function wellFormed(value: string): string {
  return value.isWellFormed() ? value : value.toWellFormed();
}
