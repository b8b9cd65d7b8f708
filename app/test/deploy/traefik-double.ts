// A test double of Traefik for the deploy tests: Traefik itself cannot run here. It does the part
// of Traefik the deploy script relies on, and nothing else:
// - reads every *.yml / *.yaml file of a dynamic directory (the file provider) and resolves the
//   service chat-active (a weighted service) to a backend URL;
// - watches the directory and reloads on any change, so an atomic rename is seen; a set of files
//   that fails to parse, or does not define chat-active exactly once, is ignored and the previous
//   configuration stays active, as Traefik keeps its last good configuration;
// - proxies HTTP requests, and WebSocket upgrades, to the backend chat-active names at that moment,
//   adding X-Forwarded-For like Traefik;
//   a WebSocket stays on the backend it was opened on until one side closes it, with the close
//   code passed through (1012 from a draining instance reaches the client as 1012);
// - answers GET /api/http/services/chat-active@file like Traefik's API.
// Middlewares (rate limits, headers) are not reproduced.
import { type FSWatcher, readdirSync, readFileSync, watch } from "node:fs";
import { join } from "node:path";
import type { Server, ServerWebSocket } from "bun";
import { parse } from "yaml";

export interface TraefikDouble {
  url: string;
  wsUrl: string;
  port: number;
  /** The Traefik API's base URL, for TRAEFIK_API_URL. */
  apiUrl: string;
  /** The backend service chat-active resolves to now, e.g. "websocket-blue". */
  active(): string;
  /** Reloads that were applied and reloads that were refused (broken files). */
  reloads(): { applied: number; ignored: number };
  /** WebSockets open through the proxy per backend service. */
  openSockets(): Record<string, number>;
  stop(): Promise<void>;
}

interface WeightedService {
  name: string;
  weight: number;
}

interface SocketData {
  path: string;
  service: string;
  backend: WebSocket;
  /** Frames the backend sent before the client side was open. */
  early: (string | ArrayBuffer)[];
  closed: boolean;
}

/**
 * Starts the double on a free loopback port. `backends` maps Traefik service names to local URLs
 * (the compose file's http://websocket-blue:3001 is http://127.0.0.1:<BLUE_PORT> here).
 */
export function startTraefikDouble(dynamicDir: string, backends: Record<string, string>): TraefikDouble {
  let weighted: WeightedService[] = load(dynamicDir) ?? fail(`no valid chat-active in ${dynamicDir}`);
  let applied = 0;
  let ignored = 0;
  const open = new Map<string, number>();

  const reload = () => {
    const next = load(dynamicDir);
    if (next) {
      weighted = next;
      applied++;
    } else {
      ignored++;
    }
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const watcher: FSWatcher = watch(dynamicDir, () => {
    // Several events come for one rename; read the directory once they settle.
    clearTimeout(timer);
    timer = setTimeout(reload, 20);
  });

  const pick = (): string => {
    const total = weighted.reduce((sum, s) => sum + s.weight, 0);
    let r = Math.random() * total;
    for (const s of weighted) {
      r -= s.weight;
      if (r < 0) return s.name;
    }
    return weighted[0]!.name;
  };
  const backendOf = (service: string) => backends[service] ?? fail(`no backend for service ${service}`);

  const server: Server<SocketData> = Bun.serve<SocketData>({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req, server) {
      const url = new URL(req.url);
      const service = pick();
      const target = backendOf(service);
      if (req.headers.get("upgrade")?.toLowerCase() === "websocket") {
        // Like Traefik, open the backend connection first: a refused upgrade (503 while draining)
        // reaches the client as an HTTP error, not as an open socket that closes at once.
        const backend = new WebSocket(`${target.replace(/^http/, "ws")}${url.pathname}${url.search}`, {
          headers: forwarded(req, server),
        } as unknown as string[]);
        const data: SocketData = { path: url.pathname, service, backend, early: [], closed: false };
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
      if (url.pathname.startsWith("/api/http/services/")) return api(url.pathname);
      try {
        const res = await fetch(`${target}${url.pathname}${url.search}`, {
          method: req.method,
          headers: { ...Object.fromEntries(req.headers), ...forwarded(req, server) },
          body: req.method === "GET" || req.method === "HEAD" ? undefined : await req.arrayBuffer(),
          redirect: "manual",
        });
        // fetch has already decoded the body: drop the headers that described the encoded one.
        const headers = new Headers(res.headers);
        headers.delete("content-encoding");
        headers.delete("content-length");
        return new Response(res.body, { status: res.status, headers });
      } catch {
        return new Response("Bad Gateway", { status: 502 });
      }
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

  // Traefik's API shape for a weighted service of the file provider.
  const api = (pathname: string) => {
    const name = decodeURIComponent(pathname.slice("/api/http/services/".length));
    if (name !== "chat-active@file") return Response.json({ message: `service not found: ${name}` }, { status: 404 });
    return Response.json({
      weighted: { services: weighted.map((s) => ({ name: s.name, weight: s.weight })) },
      status: "enabled",
      name: "chat-active@file",
      provider: "file",
      type: "weighted",
    });
  };

  const port = server.port!;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    apiUrl: `http://127.0.0.1:${port}/api`,
    active: () => weighted.map((s) => s.name).join(","),
    reloads: () => ({ applied, ignored }),
    openSockets: () => Object.fromEntries(open),
    stop: async () => {
      clearTimeout(timer);
      watcher.close();
      for (const ws of sockets.values()) ws.close(1001, "proxy stopping");
      server.stop(true);
    },
  };
}

/** chat-active's weighted services from the directory, or undefined when the files are not usable. */
function load(dir: string): WeightedService[] | undefined {
  const found: WeightedService[][] = [];
  try {
    for (const file of readdirSync(dir).sort()) {
      if (!/\.ya?ml$/.test(file)) continue;
      const doc = parse(readFileSync(join(dir, file), "utf8")) ?? {};
      const service = doc?.http?.services?.["chat-active"];
      if (!service) continue;
      const services = service.weighted?.services;
      if (!Array.isArray(services) || services.length === 0) return undefined;
      found.push(
        services.map((s: { name: unknown; weight?: unknown }) => ({
          name: String(s.name),
          weight: Number(s.weight ?? 1),
        })),
      );
    }
  } catch {
    return undefined;
  }
  if (found.length !== 1) return undefined;
  const services = found[0]!.filter((s) => s.weight > 0);
  return services.length > 0 ? services : undefined;
}

/** The headers Traefik adds: the client's address appended to X-Forwarded-For, and the original host. */
function forwarded(req: Request, server: Server<SocketData>): Record<string, string> {
  const ip = server.requestIP(req)?.address ?? "unknown";
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

function fail(message: string): never {
  throw new Error(message);
}
