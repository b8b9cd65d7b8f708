import { isIP } from "node:net";
import { isPrivateAddress } from "./net";

/**
 * The client's address: the peer's, unless the peer is a trusted proxy (Traefik), in which case the
 * right-most X-Forwarded-For entry that is not itself a trusted proxy. Anyone can send the header;
 * only a trusted peer's is believed.
 */
export function clientIp(peer: string | undefined, forwardedFor: string | null, trusted: readonly string[]): string {
  const address = normalize(peer ?? "unknown");
  if (!forwardedFor || !isTrusted(address, trusted)) return address;
  const hops = forwardedFor
    .split(",")
    .map((h) => normalize(h.trim()))
    .filter(Boolean);
  for (let i = hops.length - 1; i >= 0; i--) if (!isTrusted(hops[i]!, trusted)) return hops[i]!;
  return hops[0] ?? address;
}

function normalize(address: string) {
  return address.toLowerCase().startsWith("::ffff:") ? address.slice(7) : address;
}

export function isTrusted(address: string, trusted: readonly string[]): boolean {
  for (const entry of trusted) {
    if (entry === "private" ? isPrivateAddress(address) : inCidr(address, entry)) return true;
  }
  return false;
}

/** Whether a TRUSTED_PROXIES entry is an IPv4 or IPv6 address, a CIDR of either, or `private`. */
export function isProxyEntry(entry: string): boolean {
  return entry === "private" || parseCidr(entry) !== undefined;
}

interface Cidr {
  base: Address;
  prefix: number;
}

/** An address as one number, with its width in bits: 32 for IPv4, 128 for IPv6. */
interface Address {
  value: bigint;
  width: 32 | 128;
}

function parseCidr(text: string): Cidr | undefined {
  const [address, prefix, extra] = text.split("/");
  if (extra !== undefined) return undefined;
  const base = parseAddress(address!);
  if (!base) return undefined;
  if (prefix === undefined) return { base, prefix: base.width };
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > base.width) return undefined;
  return { base, prefix: Number(prefix) };
}

/** An address entry without a prefix matches that one address, however it is written. */
function inCidr(address: string, entry: string): boolean {
  const a = parseAddress(address);
  const cidr = parseCidr(entry);
  if (!a || !cidr || a.width !== cidr.base.width) return false;
  const hostBits = BigInt(a.width - cidr.prefix);
  return a.value >> hostBits === cidr.base.value >> hostBits;
}

function parseAddress(address: string): Address | undefined {
  switch (isIP(address)) {
    case 4:
      return { value: BigInt(ipv4(address)), width: 32 };
    case 6:
      return { value: ipv6(address), width: 128 };
    default:
      return undefined;
  }
}

/** A dotted quad that isIP accepted. */
function ipv4(address: string): number {
  const parts = address.split(".").map(Number);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

/** An IPv6 address that isIP accepted: `::` expanded, an IPv4 tail (`::ffff:10.0.0.1`) as two groups. */
function ipv6(address: string): bigint {
  let text = address.toLowerCase().split("%")[0]!;
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)?.[1];
  if (tail) {
    const n = ipv4(tail);
    text = `${text.slice(0, -tail.length)}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const [head, rest] = text.split("::");
  const before = head ? head.split(":") : [];
  const after = rest ? rest.split(":") : [];
  const groups =
    rest === undefined ? before : [...before, ...Array(8 - before.length - after.length).fill("0"), ...after];
  return groups.reduce((value, group) => (value << 16n) | BigInt(Number.parseInt(group, 16)), 0n);
}
