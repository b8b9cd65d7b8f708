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

function inCidr(address: string, cidr: string): boolean {
  const [base, bits] = cidr.split("/");
  if (bits === undefined) return address === base;
  const a = ipv4(address);
  const b = ipv4(base!);
  if (a === undefined || b === undefined) return false;
  const n = Number(bits);
  const mask = n === 0 ? 0 : (~0 << (32 - n)) >>> 0;
  return (a & mask) === (b & mask);
}

function ipv4(address: string): number | undefined {
  const parts = address.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return undefined;
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}
