// The configuration half of the Traefik double: reads a file provider directory the way Traefik v3
// does and builds what a request meets (routers, their middlewares, services). What it models and
// where Traefik documents it:
// - The file provider merges every *.yml / *.yaml file of the directory into one configuration
//   (reference/install-configuration/providers/others/file). A file that does not parse makes the
//   whole read fail: Traefik logs the error and keeps its last good configuration.
// - A configuration that parses is applied as it is, even empty or without routers: a router whose
//   service or middleware does not exist is disabled ("the service ... does not exist"), and a
//   request no router takes gets Traefik's 404 "404 page not found"
//   (reference/routing-configuration/http/routing/router; the API lists such routers as disabled).
// - Routers match on their rule, longest rule first unless `priority` says otherwise (router
//   reference, "priority"). Matchers modelled: Path, PathPrefix, Host, with !, && and ||.
// - rateLimit (reference/routing-configuration/http/middlewares/ratelimit): a token bucket per
//   source refilled at average/period, holding `burst` tokens (default 1). A request that would
//   wait up to maxDelay (1/(2·rate), 500 ms below 1 req/s) is held that long, a longer wait is
//   answered 429 with Retry-After and X-Retry-In. The source is the connection's address, or with
//   ipStrategy.depth the depth-th address from the right of X-Forwarded-For (excludedIPs skipped),
//   or a request header, or the host. Buckets are dropped after a quiet spell (2 s at >= 1 req/s),
//   and every reload builds new middlewares, so a reload starts every source with a full bucket.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";

export interface RouterConfig {
  entryPoints?: string[];
  rule: string;
  priority?: number;
  middlewares?: string[];
  service: string;
}

export interface RateLimitConfig {
  average?: number;
  period?: string | number;
  burst?: number;
  sourceCriterion?: {
    ipStrategy?: { depth?: number; excludedIPs?: string[] };
    requestHeaderName?: string;
    requestHost?: boolean;
  };
}

export interface DynamicConfig {
  routers: Record<string, RouterConfig>;
  services: Record<string, any>;
  middlewares: Record<string, any>;
}

/** The merged configuration of the directory, or the reason it could not be read. */
export function readDirectory(dir: string): { config: DynamicConfig } | { error: string } {
  const config: DynamicConfig = { routers: {}, services: {}, middlewares: {} };
  try {
    for (const file of readdirSync(dir).sort()) {
      if (!/\.ya?ml$/.test(file)) continue;
      const doc = parse(readFileSync(join(dir, file), "utf8"));
      if (doc === null || doc === undefined) continue;
      if (typeof doc !== "object") return { error: `${file}: not a mapping` };
      for (const kind of ["routers", "services", "middlewares"] as const) {
        for (const [name, body] of Object.entries(doc.http?.[kind] ?? {})) {
          // Traefik keeps the first definition and logs the conflict.
          if (!(name in config[kind])) (config[kind] as Record<string, unknown>)[name] = body;
        }
      }
    }
  } catch (error) {
    return { error: (error as Error).message };
  }
  return { config };
}

/** A Go duration ("1s", "500ms", "1m") or a number of seconds, in ms. */
export function durationMs(value: string | number | undefined, fallbackMs: number): number {
  if (value === undefined) return fallbackMs;
  if (typeof value === "number") return value * 1000;
  let total = 0;
  for (const [, n, unit] of value.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) {
    total += Number(n) * { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit!]!;
  }
  return total;
}

// --- rules -------------------------------------------------------------------------------------

export type Matcher = (req: { path: string; host: string }) => boolean;

/** Parses a router rule; throws on a matcher the double does not model, as Traefik refuses unknown ones. */
export function parseRule(rule: string): Matcher {
  const tokens = rule.match(/&&|\|\||!|\(|\)|[A-Za-z]+\(`[^`]*`\)/g) ?? [];
  if (tokens.join("").replace(/\s/g, "") !== rule.replace(/\s/g, "")) throw new Error(`cannot parse rule ${rule}`);
  let at = 0;
  const or = (): Matcher => {
    let left = and();
    while (tokens[at] === "||") {
      at++;
      const l = left;
      const r = and();
      left = (q) => l(q) || r(q);
    }
    return left;
  };
  const and = (): Matcher => {
    let left = unary();
    while (tokens[at] === "&&") {
      at++;
      const l = left;
      const r = unary();
      left = (q) => l(q) && r(q);
    }
    return left;
  };
  const unary = (): Matcher => {
    const token = tokens[at++];
    if (token === "!") {
      const inner = unary();
      return (q) => !inner(q);
    }
    if (token === "(") {
      const inner = or();
      if (tokens[at++] !== ")") throw new Error(`unbalanced parentheses in ${rule}`);
      return inner;
    }
    const [, name, arg] = /^([A-Za-z]+)\(`([^`]*)`\)$/.exec(token ?? "") ?? [];
    if (name === "PathPrefix") return (q) => q.path.startsWith(arg!);
    if (name === "Path") return (q) => q.path === arg;
    if (name === "Host") return (q) => q.host.split(":")[0]!.toLowerCase() === arg!.toLowerCase();
    throw new Error(`unsupported matcher in ${rule}`);
  };
  const matcher = or();
  if (at !== tokens.length) throw new Error(`cannot parse rule ${rule}`);
  return matcher;
}

// --- rateLimit ---------------------------------------------------------------------------------

export type Limited = { delayMs: number } | { refusedMs: number };

/** One rateLimit middleware: a token bucket per source, as golang.org/x/time/rate does it. */
export class RateLimiter {
  readonly rate: number;
  readonly burst: number;
  readonly maxDelayMs: number;
  private readonly ttlMs: number;
  private readonly buckets = new Map<string, { tokens: number; at: number; used: number }>();

  constructor(readonly config: RateLimitConfig) {
    const periodMs = durationMs(config.period, 1000) || 1000;
    this.rate = config.average ? (config.average * 1000) / periodMs : Number.POSITIVE_INFINITY;
    this.burst = Math.max(1, config.burst ?? 1);
    this.maxDelayMs = this.rate < 1 ? 500 : 1000 / (Math.floor(this.rate) * 2);
    this.ttlMs = (this.rate >= 1 ? 2 : 1 + Math.floor(1 / this.rate)) * 1000;
  }

  /** Reserves a token for `source` at `now`: the wait it costs, or a refusal with the wait it would have cost. */
  take(source: string, now: number): Limited {
    if (!Number.isFinite(this.rate)) return { delayMs: 0 };
    let bucket = this.buckets.get(source);
    if (!bucket || now - bucket.used > this.ttlMs) bucket = { tokens: this.burst, at: now, used: now };
    this.buckets.set(source, bucket);
    bucket.used = now;
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.rate);
    bucket.at = now;
    bucket.tokens -= 1;
    const delayMs = bucket.tokens < 0 ? (-bucket.tokens / this.rate) * 1000 : 0;
    if (delayMs > this.maxDelayMs) {
      bucket.tokens += 1;
      return { refusedMs: delayMs };
    }
    return { delayMs };
  }

  /** The source a request counts against (sourceCriterion). */
  source(remoteAddress: string, headers: Headers): string {
    const criterion = this.config.sourceCriterion;
    if (criterion?.requestHeaderName) return headers.get(criterion.requestHeaderName) ?? "";
    if (criterion?.requestHost) return headers.get("host") ?? "";
    const depth = criterion?.ipStrategy?.depth ?? 0;
    const excluded = criterion?.ipStrategy?.excludedIPs ?? [];
    const chain = (headers.get("x-forwarded-for") ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
    if (depth > 0) return chain[chain.length - depth] ?? "";
    if (excluded.length > 0) return [...chain].reverse().find((ip) => !excluded.includes(ip)) ?? "";
    return remoteAddress;
  }
}

// --- the built configuration ------------------------------------------------------------------

export interface Route {
  name: string;
  matches: Matcher;
  priority: number;
  limiters: { name: string; limiter: RateLimiter }[];
  /** Response headers the headers middlewares add. */
  headers: Record<string, string>;
  service: string;
}

export interface Built {
  routes: Route[];
  /** Routers that cannot serve, with Traefik's reason. */
  disabled: Record<string, string>;
  /** The loadBalancer service names each service resolves to, with weights. */
  targets(service: string): { name: string; weight: number }[];
  config: DynamicConfig;
}

/** What the routers of `entryPoint` do with this configuration, as Traefik builds it on a reload. */
export function build(config: DynamicConfig, entryPoint: string): Built {
  const disabled: Record<string, string> = {};
  const routes: Route[] = [];
  const targets = (service: string, depth = 0): { name: string; weight: number }[] => {
    const body = config.services[service];
    if (!body || depth > 5) throw new Error(`the service "${service}@file" does not exist`);
    if (body.loadBalancer) return [{ name: service, weight: 1 }];
    const children = (body.weighted?.services ?? []) as { name: string; weight?: number }[];
    return children.flatMap((child) =>
      targets(child.name.replace(/@file$/, ""), depth + 1).map((t) => ({
        name: t.name,
        weight: t.weight * (child.weight ?? 1),
      })),
    );
  };
  const limiters = new Map<string, RateLimiter>();
  for (const [name, router] of Object.entries(config.routers)) {
    if (router.entryPoints && !router.entryPoints.includes(entryPoint)) continue;
    try {
      targets(router.service.replace(/@file$/, ""));
      const route: Route = {
        name: `${name}@file`,
        matches: parseRule(router.rule),
        priority: router.priority ?? router.rule.length,
        limiters: [],
        headers: {},
        service: router.service.replace(/@file$/, ""),
      };
      for (const m of router.middlewares ?? []) {
        const key = m.replace(/@file$/, "");
        const body = config.middlewares[key];
        if (!body) throw new Error(`middleware "${key}@file" does not exist`);
        if (body.rateLimit) {
          // One middleware instance per router, as Traefik builds the chain of each router.
          const limiter = limiters.get(`${name}/${key}`) ?? new RateLimiter(body.rateLimit);
          limiters.set(`${name}/${key}`, limiter);
          route.limiters.push({ name: key, limiter });
        }
        if (body.headers?.frameDeny) route.headers["x-frame-options"] = "DENY";
        if (body.headers?.contentTypeNosniff) route.headers["x-content-type-options"] = "nosniff";
      }
      routes.push(route);
    } catch (error) {
      disabled[`${name}@file`] = (error as Error).message;
    }
  }
  routes.sort((a, b) => b.priority - a.priority);
  return {
    routes,
    disabled,
    targets: (service) => {
      try {
        return targets(service).filter((t) => t.weight > 0);
      } catch {
        return [];
      }
    },
    config,
  };
}
