/** True for loopback, RFC 1918, carrier-grade NAT, link-local and unique-local addresses. */
export function isPrivateAddress(address: string | undefined): boolean {
  if (!address) return false;
  let a = address.toLowerCase();
  if (a.startsWith("::ffff:")) a = a.slice(7);
  if (a === "::1") return true;
  if (a.includes(":")) return a.startsWith("fc") || a.startsWith("fd") || a.startsWith("fe80:");
  const parts = a.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return false;
  const [p0, p1] = parts as [number, number];
  return (
    p0 === 127 ||
    p0 === 10 ||
    (p0 === 172 && p1 >= 16 && p1 <= 31) ||
    (p0 === 192 && p1 === 168) ||
    (p0 === 100 && p1 >= 64 && p1 <= 127) ||
    (p0 === 169 && p1 === 254)
  );
}

/** Constant-time comparison of a bearer token from an Authorization header. */
export function hasBearer(header: string | null | undefined, token: string): boolean {
  if (!header || !token) return false;
  const match = /^Bearer\s+(.+)$/i.exec(header.trim());
  if (!match) return false;
  const given = Buffer.from(match[1]!);
  const expected = Buffer.from(token);
  return given.length === expected.length && require("node:crypto").timingSafeEqual(given, expected);
}
