// The address and token checks behind /metrics and /admin. Requests in tests come from loopback
// only, so the other address classes are checked on the function itself.
import { expect, test } from "bun:test";
import { hasBearer, isPrivateAddress } from "../../src/http/net";

test("loopback, private, link-local and unique-local addresses are private", () => {
  for (const a of [
    "127.0.0.1",
    "::1",
    "::ffff:127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.1.1",
    "fd00::1",
    "fe80::1",
  ]) {
    expect(isPrivateAddress(a), a).toBe(true);
  }
});

test("public and malformed addresses are not", () => {
  for (const a of [
    undefined,
    "",
    "8.8.8.8",
    "172.32.0.1",
    "192.169.0.1",
    "100.128.0.1",
    "2001:db8::1",
    "::ffff:8.8.8.8",
    "1.2.3",
    "256.0.0.1",
    "localhost",
  ]) {
    expect(isPrivateAddress(a), String(a)).toBe(false);
  }
});

test("hasBearer accepts exactly the token", () => {
  expect(hasBearer("Bearer t0k", "t0k")).toBe(true);
  expect(hasBearer("bearer t0k", "t0k")).toBe(true);
  for (const h of [null, undefined, "", "Bearer", "Bearer t0", "Bearer t0kk", "Basic t0k", "t0k"])
    expect(hasBearer(h, "t0k")).toBe(false);
  expect(hasBearer("Bearer anything", "")).toBe(false);
});
