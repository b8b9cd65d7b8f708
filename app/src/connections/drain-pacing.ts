/**
 * When each client of a draining instance should come back (the `retryAfterMs` of its goodbye).
 *
 * A reconnect wave meets two per-address limits on its way to the new instance: the front door's
 * (Traefik's ws-ratelimit) and the new instance's own (CONNECT_RATE_PER_IP, CONNECT_BURST_PER_IP),
 * sized alike (docs/operations.md). Clients behind one address (a NAT, a corporate proxy, a mobile
 * carrier) share them. A uniform jitter alone sends all of them within DRAIN_JITTER_MS, more than
 * the limit admits: the surplus is refused, backs off and comes back later, again and again.
 *
 * So the delays are planned per address. An address with at most `headroom` clients (half the
 * burst; the other half stays free for new connections and retries from that address) keeps the
 * uniform jitter over DRAIN_JITTER_MS, which spreads the load on the new instance. Of an address
 * with more, the first `headroom` keep the jitter and the k-th after them comes back in its own slot
 * of 1/ratePerIp seconds, at a random point in it: (k + 1 + u) / ratePerIp. Guarantee: in any
 * interval of d seconds at most headroom + ratePerIp * d + 2 of an address's clients are told to
 * come back, which a bucket of ratePerIp and burstPerIp (>= 4) admits without a refusal. An
 * address with more clients than fit into `windowMs` has its slots compressed into it: they then
 * come back faster than the limit and some are refused; the result counts those addresses.
 */
export interface DrainPacing {
  /** Upgrades per second an address may make (CONNECT_RATE_PER_IP). */
  ratePerIp: number;
  /** Upgrades an address may make at once (CONNECT_BURST_PER_IP). */
  burstPerIp: number;
  /** Spread of the delays for load on the new instance (DRAIN_JITTER_MS). */
  jitterMs: number;
  /** Latest delay handed out: the part of the drain in which clients are sent away. */
  windowMs: number;
  random: () => number;
}

export interface PacedDelays {
  /** retryAfterMs per connection, in the order of the addresses given. */
  delays: number[];
  /** Addresses whose clients did not fit into windowMs at ratePerIp. */
  compressed: number;
}

/** Plans the goodbye delays of connections from these addresses (undefined: an address of its own). */
export function paceReconnects(addresses: readonly (string | undefined)[], pacing: DrainPacing): PacedDelays {
  const headroom = Math.max(1, Math.floor(pacing.burstPerIp / 2));
  const slotMs = 1000 / pacing.ratePerIp;
  const byAddress = new Map<string, number[]>();
  addresses.forEach((address, i) => {
    if (address === undefined) return;
    const indexes = byAddress.get(address);
    if (indexes) indexes.push(i);
    else byAddress.set(address, [i]);
  });
  const delays = addresses.map(() => Math.floor(pacing.random() * pacing.jitterMs));
  if (!Number.isFinite(pacing.ratePerIp)) return { delays, compressed: 0 };
  let compressed = 0;
  for (const indexes of byAddress.values()) {
    const paced = indexes.length - headroom;
    if (paced <= 0) continue;
    const scale = paced * slotMs > pacing.windowMs ? pacing.windowMs / (paced * slotMs) : 1;
    if (scale < 1) compressed++;
    for (let k = 0; k < paced; k++) {
      delays[indexes[headroom + k]!] = Math.ceil((k + pacing.random()) * slotMs * scale);
    }
  }
  return { delays, compressed };
}

/**
 * The goodbyes of a drain: each connection with its retryAfterMs, in the order they may come back,
 * so that closing them in this order holds back no client whose turn has come. Without a per-address
 * limit (connectRatePerIp unset) the delays are the uniform jitter alone.
 */
export function planGoodbyes<C extends { clientIp: string | undefined }>(
  connections: readonly C[],
  options: {
    drainTimeoutMs: number;
    drainJitterMs: number;
    connectRatePerIp?: number;
    connectBurstPerIp?: number;
  },
  random: () => number,
): { goodbyes: { connection: C; retryAfterMs: number }[]; compressed: number } {
  const { delays, compressed } = paceReconnects(
    connections.map((c) => c.clientIp),
    {
      ratePerIp: options.connectRatePerIp ?? Number.POSITIVE_INFINITY,
      burstPerIp: options.connectBurstPerIp ?? 1,
      jitterMs: options.drainJitterMs,
      windowMs: options.drainTimeoutMs / 2,
      random,
    },
  );
  const goodbyes = connections.map((connection, i) => ({ connection, retryAfterMs: delays[i]! }));
  goodbyes.sort((a, b) => a.retryAfterMs - b.retryAfterMs);
  return { goodbyes, compressed };
}
