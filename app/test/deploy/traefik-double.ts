// A test double of Traefik v3 for the deploy tests: Traefik itself cannot run here. It serves the
// `web` entry point from the same traefik/dynamic files, and models what changes the behaviour and
// the figures of a deploy (the configuration side is in traefik-double-config.ts):
// - the file provider watches the directory; any change in it, whatever the file's name, makes
//   Traefik read the whole directory again. A read that fails to parse is ignored with an error
//   and the last good configuration stays; one that parses is applied as it is, so an empty
//   active-color.yml disables every router and the front door answers 404.
// - the providers' reload throttle (providers.providersThrottleDuration, 2 s by default;
//   reference/install-configuration/providers/overview): the first change is taken at once, later
//   ones within the throttle after it wait for its end, and only the latest of them is applied.
//   With real Traefik v3.7.9 a temporary file created inside the directory held the real change
//   back by about 2 s this way.
// - routers with their rules and middlewares: rateLimit refuses with 429 (or holds a request up
//   to maxDelay) per source, exactly as configured, WebSocket upgrades included.
// - proxying: HTTP requests and WebSocket upgrades go to the backend the router's service names
//   at that moment, with X-Forwarded-For added; an open WebSocket stays on the backend it was
//   opened on until one side closes it, with the close code passed through (1012 stays 1012).
// - the traefik entry point (its own port): the API (/api/http/services/<name>,
//   /api/http/routers) and Prometheus metrics (traefik_router_requests_total and
//   traefik_entrypoint_requests_total by code, traefik_config_reloads_total).
import { type FSWatcher, watch } from "node:fs";
import type { Server, ServerWebSocket } from "bun";
import { type Built, build, readDirectory } from "./traefik-double-config";

export interface TraefikDouble {
  url: string;
  wsUrl: string;
  port: number;
  /** The Traefik API's base URL, for TRAEFIK_API_URL. */
  apiUrl: string;
  /** Prometheus metrics of the double, like Traefik's metrics entry point. */
  metricsUrl: string;
  /** The backend services chat-active resolves to now, e.g. "websocket-blue"; "" when none. */
  active(): string;
  /** Reloads that were applied, reads that were refused (files that do not parse). */
  reloads(): { applied: number; ignored: number };
  /** When each reload was applied (ms since the epoch) and what chat-active named then. */
  history(): { at: number; active: string }[];
  /** WebSockets open through the proxy per backend service. */
  openSockets(): Record<string, number>;
  /** Answers per status code given to WebSocket upgrades (101 accepted, 429 refused by a rate limit, ...). */
  upgrades(): Record<number, number>;
  stop(): Promise<void>;
}

export interface TraefikDoubleOptions {
  /** providers.providersThrottleDuration in ms; Traefik's default is 2000. */
  throttleMs?: number;
}

interface SocketData {
  service: string;
  backend: WebSocket;
  /** Frames the backend sent before the client side was open. */
  early: (string | ArrayBuffer)[];
  closed: boolean;
}

const NOT_FOUND = () =>
  new Response("404 page not found\n", { status: 404, headers: { "content-type": "text/plain" } });

/**
 * Starts the double on free loopback ports. `backends` maps Traefik service names to local URLs
 * (the compose file's http://websocket-blue:3001 is http://127.0.0.1:<BLUE_PORT> here).
 */
export function startTraefikDouble(
  dynamicDir: string,
  backends: Record<string, string>,
  options: TraefikDoubleOptions = {},
): TraefikDouble {
  const throttleMs = options.throttleMs ?? 2000;
  const first = readDirectory(dynamicDir);
  if ("error" in first) throw new Error(`the double cannot start on ${dynamicDir}: ${first.error}`);
  let current: Built = build(first.config, "web");
  let applied = 0;
  let ignored = 0;
  const history: { at: number; active: string }[] = [];
  const open = new Map<string, number>();
  const upgrades = new Map<number, number>();
  const routerCodes = new Map<string, number>();
  const entryCodes = new Map<string, number>();
  const count = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);

  // The file provider reads the directory on each change; the throttle decides when a read is
  // applied. `settle` gathers the several events of one rename into one read.
  let lastApply = 0;
  let pending: ReturnType<typeof setTimeout> | undefined;
  const apply = () => {
    pending = undefined;
    lastApply = performance.now();
    const next = readDirectory(dynamicDir);
    if ("error" in next) {
      ignored++;
      return;
    }
    current = build(next.config, "web");
    applied++;
    history.push({ at: Date.now(), active: activeNames() });
  };
  const watcher: FSWatcher = watch(dynamicDir, () => {
    if (pending) return;
    const wait = Math.max(5, lastApply + throttleMs - performance.now());
    pending = setTimeout(apply, wait);
  });

  function activeNames() {
    return current
      .targets("chat-active")
      .map((t) => t.name)
      .join(",");
  }

  const pick = (service: string): string | undefined => {
    const targets = current.targets(service);
    const total = targets.reduce((sum, t) => sum + t.weight, 0);
    let r = Math.random() * total;
    for (const t of targets) {
      r -= t.weight;
      if (r < 0) return t.name;
    }
    return targets[0]?.name;
  };

  const server: Server<SocketData> = Bun.serve<SocketData>({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req, server) {
      const isUpgrade = req.headers.get("upgrade")?.toLowerCase() === "websocket";
      const res = await route(req, server, isUpgrade);
      const code = res?.status ?? 101;
      if (isUpgrade) upgrades.set(code, (upgrades.get(code) ?? 0) + 1);
      count(entryCodes, `${code}\t${isUpgrade ? "websocket" : "http"}`);
      return res;
    },
    websocket: {
      open(ws) {
        const data = ws.data;
        sockets.set(data, ws);
        open.set(data.service, (open.get(data.service) ?? 0) + 1);
        for (const frame of data.early) ws.send(frame);
        data.early = [];
        const close = pendingClose.get(data);
        if (close) closeWith(ws, close.code, close.reason);
      },
      message(ws, message) {
        if (ws.data.backend.readyState === WebSocket.OPEN) ws.data.backend.send(message);
      },
      close(ws, code, reason) {
        sockets.delete(ws.data);
        open.set(ws.data.service, (open.get(ws.data.service) ?? 1) - 1);
        if (!ws.data.closed) ws.data.backend.close(closable(code) ? code : 1000, reason);
      },
    },
  });
  const sockets = new Map<SocketData, ServerWebSocket<SocketData>>();
  const pendingClose = new Map<SocketData, { code: number; reason: string }>();

  async function route(req: Request, server: Server<SocketData>, isUpgrade: boolean) {
    const url = new URL(req.url);
    const built = current;
    const router = built.routes.find((r) => r.matches({ path: url.pathname, host: req.headers.get("host") ?? "" }));
    if (!router) return NOT_FOUND();
    const record = (res: Response | undefined) => {
      count(routerCodes, `${res?.status ?? 101}\t${isUpgrade ? "websocket" : "http"}\t${router.name}`);
      return res;
    };
    const remote = server.requestIP(req)?.address ?? "";
    for (const { limiter } of router.limiters) {
      const verdict = limiter.take(limiter.source(remote, req.headers), performance.now());
      if ("refusedMs" in verdict) {
        return record(
          new Response("Too Many Requests", {
            status: 429,
            headers: {
              "retry-after": String(Math.ceil(verdict.refusedMs / 1000)),
              "x-retry-in": `${(verdict.refusedMs / 1000).toFixed(3)}s`,
            },
          }),
        );
      }
      if (verdict.delayMs > 0) await Bun.sleep(verdict.delayMs);
    }
    const service = pick(router.service);
    const target = service ? backends[service] : undefined;
    if (!service || !target) return record(new Response("Service Unavailable", { status: 503 }));
    if (isUpgrade) return record(await upgrade(req, server, url, service, target));
    try {
      const res = await fetch(`${target}${url.pathname}${url.search}`, {
        method: req.method,
        headers: { ...Object.fromEntries(req.headers), ...forwarded(req, remote) },
        body: req.method === "GET" || req.method === "HEAD" ? undefined : await req.arrayBuffer(),
        redirect: "manual",
      });
      // fetch has already decoded the body: drop the headers that described the encoded one.
      const headers = new Headers(res.headers);
      headers.delete("content-encoding");
      headers.delete("content-length");
      for (const [k, v] of Object.entries(router.headers)) headers.set(k, v);
      return record(new Response(res.body, { status: res.status, headers }));
    } catch {
      return record(new Response("Bad Gateway", { status: 502 }));
    }
  }

  async function upgrade(req: Request, server: Server<SocketData>, url: URL, service: string, target: string) {
    // Like Traefik, open the backend connection first: a refused upgrade (503 while draining)
    // reaches the client as an HTTP error, not as an open socket that closes at once.
    const backend = new WebSocket(`${target.replace(/^http/, "ws")}${url.pathname}${url.search}`, {
      headers: forwarded(req, server.requestIP(req)?.address ?? ""),
    } as unknown as string[]);
    const data: SocketData = { service, backend, early: [], closed: false };
    const ok = await new Promise<boolean>((resolve) => {
      backend.addEventListener("open", () => resolve(true), { once: true });
      backend.addEventListener("error", () => resolve(false), { once: true });
      backend.addEventListener("close", () => resolve(false), { once: true });
    });
    if (!ok) return new Response("Bad Gateway", { status: 502 });
    backend.binaryType = "arraybuffer";
    backend.addEventListener("message", (event) => {
      const ws = sockets.get(data);
      if (ws) ws.send(event.data as string | ArrayBuffer);
      else data.early.push(event.data as string | ArrayBuffer);
    });
    backend.addEventListener("close", (event) => {
      data.closed = true;
      const ws = sockets.get(data);
      if (ws) closeWith(ws, event.code, event.reason);
      else pendingClose.set(data, { code: event.code, reason: event.reason });
    });
    if (server.upgrade(req, { data })) return undefined;
    backend.close();
    return new Response("Upgrade failed", { status: 400 });
  }

  // The traefik entry point: API and metrics.
  const admin = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch(req) {
      const { pathname } = new URL(req.url);
      if (pathname === "/metrics") return new Response(metrics(), { headers: { "content-type": "text/plain" } });
      if (pathname === "/api/http/routers") {
        return Response.json([
          ...current.routes.map((r) => ({ name: r.name, status: "enabled", service: r.service })),
          ...Object.entries(current.disabled).map(([name, error]) => ({ name, status: "disabled", error: [error] })),
        ]);
      }
      if (pathname.startsWith("/api/http/services/")) {
        const name = decodeURIComponent(pathname.slice("/api/http/services/".length)).replace(/@file$/, "");
        const body = current.config.services[name];
        if (!body) return Response.json({ message: `service not found: ${name}@file` }, { status: 404 });
        return Response.json({ ...body, status: "enabled", name: `${name}@file`, provider: "file" });
      }
      return NOT_FOUND();
    },
  });

  function metrics(): string {
    const lines = [
      "# TYPE traefik_config_reloads_total counter",
      `traefik_config_reloads_total ${applied}`,
      "# TYPE traefik_entrypoint_requests_total counter",
    ];
    for (const [key, n] of entryCodes) {
      const [code, protocol] = key.split("\t");
      lines.push(
        `traefik_entrypoint_requests_total{code="${code}",entrypoint="web",method="GET",protocol="${protocol}"} ${n}`,
      );
    }
    lines.push("# TYPE traefik_router_requests_total counter");
    for (const [key, n] of routerCodes) {
      const [code, protocol, router] = key.split("\t");
      lines.push(
        `traefik_router_requests_total{code="${code}",method="GET",protocol="${protocol}",router="${router}",service="chat-active@file"} ${n}`,
      );
    }
    return `${lines.join("\n")}\n`;
  }

  const port = server.port!;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    apiUrl: `http://127.0.0.1:${admin.port}/api`,
    metricsUrl: `http://127.0.0.1:${admin.port}/metrics`,
    active: activeNames,
    reloads: () => ({ applied, ignored }),
    history: () => [...history],
    openSockets: () => Object.fromEntries(open),
    upgrades: () => Object.fromEntries(upgrades),
    stop: async () => {
      clearTimeout(pending);
      watcher.close();
      for (const ws of sockets.values()) ws.close(1001, "proxy stopping");
      server.stop(true);
      admin.stop(true);
    },
  };
}

/** The headers Traefik adds: the client's address appended to X-Forwarded-For, and the original host. */
function forwarded(req: Request, ip: string): Record<string, string> {
  const before = req.headers.get("x-forwarded-for");
  return {
    "x-forwarded-for": before ? `${before}, ${ip}` : ip,
    "x-forwarded-host": req.headers.get("host") ?? "",
    "x-forwarded-proto": "http",
  };
}

function closeWith(ws: ServerWebSocket<SocketData>, code: number, reason: string) {
  ws.close(closable(code) ? code : 1011, reason);
}

/** Codes an endpoint may send in a close frame (1005, 1006 and 1015 are reserved for reporting). */
function closable(code: number): boolean {
  return (
    code === 1000 || (code >= 1001 && code <= 1014 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999)
  );
}
