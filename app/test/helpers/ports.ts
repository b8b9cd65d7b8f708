// Ports for servers that a test or benchmark starts a moment after picking the port.
//
// A port the kernel hands out (a bind to port 0) lies in its ephemeral range, the same range it
// draws the source port of every outgoing connection from. Between the pick and the server's own
// bind (a deploy test starts green seconds later) any connection of any process may take it, and
// the server then exits with "port in use". Ports below the ephemeral range are never chosen by
// the kernel, so one that is free when picked stays free unless a program asks for it by number.
import { readFileSync } from "node:fs";

const RANGE_SIZE = 10_000;

function ephemeralLow(): number | undefined {
  try {
    const low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    return Number.isInteger(low) ? low : undefined;
  } catch {
    return undefined;
  }
}

const low = ephemeralLow();
// Too little room below the range (or no /proc): let the kernel choose, as a last resort.
const range = low !== undefined && low - RANGE_SIZE >= 1024 ? { first: low - RANGE_SIZE, size: RANGE_SIZE } : undefined;
// Each process starts at its own place and walks on, so it never hands out one port twice and two
// processes picking at once rarely meet (and the bind check below settles it when they do).
let next = range ? Math.floor(Math.random() * range.size) : 0;

function bindable(port: number): boolean {
  try {
    Bun.serve({ port, hostname: "127.0.0.1", fetch: () => new Response() }).stop(true);
    return true;
  } catch {
    return false;
  }
}

/** A loopback port that is free now and that the kernel will not give to anyone else. */
export function freePort(): number {
  if (range) {
    for (let tried = 0; tried < range.size; tried++) {
      const port = range.first + (next++ % range.size);
      if (bindable(port)) return port;
    }
  }
  const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
  const port = server.port!;
  server.stop(true);
  return port;
}
