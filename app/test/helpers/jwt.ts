import { SignJWT } from "jose";

export const TEST_SECRET = "test-secret-that-is-at-least-32-characters-long";

/** An HS256 token for `sub`, expiring in `expiresInSeconds` (negative: already expired). */
export function hsToken(sub: string, options: { expiresInSeconds?: number; roles?: string[]; secret?: string } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({ roles: options.roles ?? [] })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuedAt(now - 5);
  jwt.setExpirationTime(now + (options.expiresInSeconds ?? 600));
  return jwt.sign(new TextEncoder().encode(options.secret ?? TEST_SECRET));
}
