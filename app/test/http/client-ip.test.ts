// Which X-Forwarded-For entry is believed. Requests in tests come from loopback only, so proxies on
// other addresses, and IPv6 ones, are checked on the function itself.
import { expect, test } from "bun:test";
import { clientIp, isProxyEntry } from "../../src/http/client-ip";

test("a peer inside a trusted IPv4 or IPv6 CIDR has its X-Forwarded-For believed", () => {
  const cases: [peer: string, trusted: string[]][] = [
    ["10.1.2.3", ["10.0.0.0/8"]],
    ["172.18.0.2", ["172.18.0.2"]],
    ["::ffff:10.1.2.3", ["10.0.0.0/8"]],
    ["2001:db8::7", ["2001:db8::/32"]],
    ["2001:0db8:0000:0000:0000:0000:0000:0007", ["2001:db8::7"]],
    ["fd00::5", ["fd00::/8"]],
    ["fd00::5", ["private"]],
    ["::1", ["::1/128"]],
  ];
  for (const [peer, trusted] of cases) expect(clientIp(peer, "203.0.113.7", trusted), peer).toBe("203.0.113.7");
});

test("a peer outside every entry is the client, whatever header it sends", () => {
  const cases: [peer: string, trusted: string[]][] = [
    ["11.1.2.3", ["10.0.0.0/8"]],
    ["2001:db9::7", ["2001:db8::/32"]],
    ["10.1.2.3", ["2001:db8::/32"]],
    ["2001:db8::7", ["10.0.0.0/8"]],
    ["8.8.8.8", ["private"]],
  ];
  for (const [peer, trusted] of cases) expect(clientIp(peer, "203.0.113.7", trusted), peer).toBe(peer);
});

test("the right-most entry that is not a trusted proxy is the client", () => {
  expect(clientIp("10.0.0.2", "198.51.100.9, 203.0.113.7, fd00::3", ["10.0.0.0/8", "fd00::/8"])).toBe("203.0.113.7");
});

test("TRUSTED_PROXIES entries: addresses, CIDRs of either family, private", () => {
  for (const entry of ["private", "10.0.0.1", "10.0.0.0/8", "0.0.0.0/0", "::1", "fd00::/8", "2001:db8::/128"])
    expect(isProxyEntry(entry), entry).toBe(true);
  for (const entry of [
    "",
    "PRIVATE",
    "1.2.3",
    "256.0.0.1",
    "10.0.0.0/33",
    "10.0.0.0/",
    "10.0.0.0/8/8",
    "fd00::/129",
    "traefik",
  ])
    expect(isProxyEntry(entry), entry).toBe(false);
});
