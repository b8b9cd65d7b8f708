// Redis Cluster's key-to-slot mapping (CRC16-XMODEM of the key's hash tag, modulo 16384), so a batch
// of appends can be split into one script call per slot before it is sent. Tested against the
// cluster's own CLUSTER KEYSLOT.

export const SLOTS = 16384;

const TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

const encoder = new TextEncoder();

function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (let i = 0; i < bytes.length; i++) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ bytes[i]!) & 0xff]!;
  return crc;
}

/** CRC16 of the string's UTF-8 bytes: an ASCII string is its own UTF-8, read without encoding it. */
function crc16OfString(text: string): number {
  let crc = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0x80) return crc16(encoder.encode(text));
    crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ code) & 0xff]!;
  }
  return crc;
}

/**
 * The part of a key that decides its slot: between the first `{` and the first `}` after it when
 * that is not empty, else the whole key (the rule of the Redis Cluster specification).
 */
export function hashTag(key: string): string {
  const open = key.indexOf("{");
  if (open < 0) return key;
  const close = key.indexOf("}", open + 1);
  if (close <= open + 1) return key;
  return key.slice(open + 1, close);
}

/**
 * Slots of keys seen lately. A room's keys are asked for several times per message (the append's
 * routing, the status of its shard on the way in and out): the same few thousand keys, over and
 * over. A pure function's memo, so one per process is safe; emptied when full.
 */
const cache = new Map<string, number>();
const CACHE_KEYS = 50_000;

export function keySlot(key: string): number {
  let slot = cache.get(key);
  if (slot === undefined) {
    slot = crc16OfString(hashTag(key)) % SLOTS;
    if (cache.size >= CACHE_KEYS) cache.clear();
    cache.set(key, slot);
  }
  return slot;
}
