import { lookup } from "node:dns/promises";
import { createServer } from "node:net";

/** The listener could not be opened; the message is the one line an operator sees. */
export class ListenError extends Error {
  constructor(
    readonly host: string,
    readonly port: number,
    readonly reason: string,
  ) {
    super(`cannot listen on ${host.includes(":") ? `[${host}]` : host}:${port}: ${reason}`);
  }
}

const REASONS: Record<string, string> = {
  EADDRINUSE: "address already in use",
  EADDRNOTAVAIL: "address not available on this machine",
  EACCES: "permission denied",
};

/**
 * Why HOST:PORT cannot be bound. Bun's listen reports every failure as EADDRINUSE ("Is port N in
 * use?"), an address this machine does not have and a name that does not resolve included, so the
 * bind is tried again with node:net, whose error carries the real errno.
 */
export async function listenFailureReason(host: string, port: number, error: unknown): Promise<string> {
  try {
    await lookup(host);
  } catch {
    return "host name does not resolve";
  }
  const code = await new Promise<string | undefined>((resolve) => {
    const probe = createServer();
    probe.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "unknown error"));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(undefined)));
  });
  if (code === undefined) return (error as Error)?.message ?? String(error);
  return REASONS[code] ?? code;
}
