// traefik/traefik.yml and traefik/dynamic/*.yml: valid against the schemas the repository keeps in
// traefik/schema/ (the Traefik v3 keys this configuration uses, from Traefik's reference
// documentation), and routing the way the deploy needs. With TRAEFIK_BIN set to a Traefik v3
// binary, that binary also loads the files and must report every router enabled.
import { describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Ajv from "ajv";
import { parse } from "yaml";
import { freePort } from "../helpers/binary";

const repoRoot = join(import.meta.dir, "..", "..", "..");
const schemasDir = join(repoRoot, "traefik", "schema");
const dynamicDir = join(repoRoot, "traefik", "dynamic");

const readYaml = async (path: string) => parse(await Bun.file(path).text());
const readJson = async (path: string) => JSON.parse(await Bun.file(path).text());

function compile(schema: object) {
  const ajv = new Ajv({ allErrors: true, strict: true });
  const validate = ajv.compile(schema);
  return (doc: unknown): string[] =>
    validate(doc)
      ? []
      : (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
}

const staticErrors = compile(await readJson(join(schemasDir, "static.schema.json")));
const dynamicErrors = compile(await readJson(join(schemasDir, "dynamic.schema.json")));

const staticConfig = await readYaml(join(repoRoot, "traefik", "traefik.yml"));
const dynamicFiles = readdirSync(dynamicDir)
  .filter((f) => f.endsWith(".yml") || f.endsWith(".yaml"))
  .sort();
const dynamic: Record<string, any> = Object.fromEntries(
  await Promise.all(dynamicFiles.map(async (f) => [f, (await readYaml(join(dynamicDir, f))) ?? {}] as const)),
);

/** Every HTTP object of one kind across the dynamic files, with the file that defines it. */
function definitions(kind: "routers" | "services" | "middlewares"): { name: string; file: string; body: any }[] {
  return Object.entries(dynamic).flatMap(([file, doc]) =>
    Object.entries(doc?.http?.[kind] ?? {}).map(([name, body]) => ({ name, file, body })),
  );
}

const routers = definitions("routers");
const services = definitions("services");
const middlewares = definitions("middlewares");
const middleware = (name: string) => middlewares.find((m) => m.name === name.replace(/@file$/, ""))?.body;

/** A router's middlewares with chains expanded, as their definitions. */
function middlewareChain(router: any): any[] {
  return (router.middlewares ?? []).flatMap((name: string) => {
    const body = middleware(name);
    return body?.chain ? middlewareChain({ middlewares: body.chain.middlewares }) : [body];
  });
}

/** Requests per second a rateLimit middleware allows on average (period: Go duration or seconds). */
function ratePerSecond(rateLimit: { average: number | string; period?: number | string }): number {
  const period = rateLimit.period ?? 1;
  let seconds = Number(period);
  if (typeof period === "string") {
    const [, n, unit] = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(period) ?? [];
    seconds = Number(n) * ({ ms: 0.001, s: 1, m: 60, h: 3600 } as Record<string, number>)[unit!]!;
  }
  return Number(rateLimit.average) / seconds;
}

const isWebSocketRouter = (router: any) => /(^|&&\s*|\|\|\s*|\()PathPrefix\(`\/ws`\)/.test(router.rule);

describe("Traefik schemas", () => {
  test("traefik/traefik.yml is a valid static configuration", () => {
    expect(staticErrors(staticConfig)).toEqual([]);
  });

  test("the dynamic directory holds the expected files", () => {
    expect(dynamicFiles).toEqual(["active-color.yml", "middlewares.yml", "routers.yml", "services-blue-green.yml"]);
  });

  for (const file of dynamicFiles) {
    test(`traefik/dynamic/${file} is a valid file-provider configuration`, () => {
      expect(dynamicErrors(dynamic[file])).toEqual([]);
    });
  }

  test("a broken copy is rejected: misspelt key, unknown option, missing service", () => {
    const misspelt = structuredClone(staticConfig);
    misspelt.entryPoints.web.adress = misspelt.entryPoints.web.address;
    delete misspelt.entryPoints.web.address;
    expect(staticErrors(misspelt).join("\n")).toContain("must NOT have additional properties");

    const unknownOption = structuredClone(dynamic["middlewares.yml"]);
    unknownOption.http.middlewares["api-ratelimit"].rateLimit.perSecond = 10;
    expect(dynamicErrors(unknownOption)).not.toEqual([]);

    const noService = structuredClone(dynamic["routers.yml"]);
    delete noService.http.routers["chat-ws"].service;
    expect(dynamicErrors(noService).join("\n")).toContain("must have required property 'service'");
  });
});

describe("traefik/traefik.yml", () => {
  test("entry points: web :80, websecure :443, dashboard :8080, metrics apart", () => {
    const eps = staticConfig.entryPoints;
    expect(eps.web.address).toBe(":80");
    expect(eps.websecure.address).toBe(":443");
    expect(eps.traefik.address).toBe(":8080");
    expect(staticConfig.metrics.prometheus.entryPoint).toBe("metrics");
    expect(eps.metrics.address).not.toBe(eps.traefik.address);
  });

  test("the file provider watches the dynamic directory; Docker exposes nothing by default", () => {
    expect(staticConfig.providers.file).toEqual({ directory: "/etc/traefik/dynamic", watch: true });
    expect(staticConfig.providers.file.filename).toBeUndefined();
    expect(staticConfig.providers.docker.exposedByDefault).toBe(false);
  });

  test("dashboard and API on the traefik entry point; Prometheus metrics by router and service", () => {
    expect(staticConfig.api).toMatchObject({ dashboard: true, insecure: true });
    expect(staticConfig.metrics.prometheus).toMatchObject({ addRoutersLabels: true, addServicesLabels: true });
  });

  test("JSON access logs without credentials; Let's Encrypt off by default", () => {
    expect(staticConfig.accessLog.format).toBe("json");
    expect(staticConfig.accessLog.fields.headers.names.Authorization).toBe("drop");
    expect(staticConfig.accessLog.fields.headers.names.Cookie).toBe("drop");
    expect(staticConfig.certificatesResolvers).toBeUndefined();
  });

  test("compose mounts the dynamic directory where the file provider looks, and publishes :8080 on loopback only", async () => {
    const compose = await readYaml(join(repoRoot, "docker-compose.yml"));
    const traefik = compose.services.traefik;
    expect(traefik.volumes).toContain(`./traefik/dynamic:${staticConfig.providers.file.directory}:ro`);
    expect(traefik.ports).toContain(`127.0.0.1:8080:${staticConfig.entryPoints.traefik.address.replace(":", "")}`);
    expect(compose.networks.chat.name).toBe(staticConfig.providers.docker.network);
  });
});

describe("traefik/dynamic", () => {
  test("chat-active is defined in exactly one file, active-color.yml, and nowhere as a router", () => {
    const defined = [...routers, ...services].filter((d) => d.name === "chat-active");
    expect(defined.map((d) => d.file)).toEqual(["active-color.yml"]);
    expect(services.find((s) => s.name === "chat-active")).toBeDefined();
  });

  test("active-color.yml is owned by the deploy script and names blue", async () => {
    const text = await Bun.file(join(dynamicDir, "active-color.yml")).text();
    expect(text.split("\n")[0]).toContain("scripts/blue-green-deploy.sh");
    const doc = dynamic["active-color.yml"];
    expect(Object.keys(doc.http)).toEqual(["services"]);
    expect(Object.keys(doc.http.services)).toEqual(["chat-active"]);
    expect(doc.http.services["chat-active"].weighted.services).toEqual([{ name: "websocket-blue", weight: 1 }]);
  });

  test("every router serves chat-active; every referenced middleware and service exists", () => {
    expect(routers.length).toBeGreaterThan(0);
    for (const router of routers) {
      expect({ router: router.name, service: router.body.service }).toEqual({
        router: router.name,
        service: "chat-active",
      });
      for (const name of router.body.middlewares ?? [])
        expect({ router: router.name, middleware: name, defined: !!middleware(name) }).toMatchObject({ defined: true });
    }
    for (const s of services.filter((s) => s.body.weighted)) {
      for (const target of s.body.weighted.services)
        expect(services.map((x) => x.name)).toContain(target.name.replace(/@file$/, ""));
    }
  });

  test("WebSocket routers: /ws, rate limited to 25 upgrades/s per client IP (bursts of 50), never compressed", () => {
    const ws = routers.filter((r) => isWebSocketRouter(r.body));
    expect(ws.flatMap((r) => r.body.entryPoints).sort()).toEqual(["web", "websecure"]);
    for (const router of ws) {
      const chain = middlewareChain(router.body);
      expect(chain.some((m) => "compress" in m)).toBe(false);
      const limits = chain.filter((m) => "rateLimit" in m).map((m) => m.rateLimit);
      expect(limits).toHaveLength(1);
      expect(ratePerSecond(limits[0])).toBe(25);
      expect(limits[0].burst).toBe(50);
      expect(limits[0].sourceCriterion.ipStrategy).toBeDefined();
    }
  });

  test("the colors limit upgrades per address exactly as ws-ratelimit does: the drain paces its wave to their limit", async () => {
    // The colors take their environment from a YAML anchor (<<: *websocket-env).
    const compose = parse(await Bun.file(join(repoRoot, "docker-compose.yml")).text(), { merge: true });
    const { rateLimit } = middleware("ws-ratelimit");
    const defaultOf = (value: string) => Number(/^\$\{[A-Z_]+:-(\d+)\}$/.exec(value)?.[1] ?? value);
    for (const color of ["websocket-blue", "websocket-green"]) {
      const env = compose.services[color].environment;
      expect({ color, rate: defaultOf(env.CONNECT_RATE_PER_IP), burst: defaultOf(env.CONNECT_BURST_PER_IP) }).toEqual({
        color,
        rate: ratePerSecond(rateLimit),
        burst: rateLimit.burst,
      });
    }
  });

  test("HTTP routers: everything else but /metrics and /admin, 10 requests/s per client IP, compressed", () => {
    const http = routers.filter((r) => !isWebSocketRouter(r.body));
    expect(http.flatMap((r) => r.body.entryPoints).sort()).toEqual(["web", "websecure"]);
    for (const router of http) {
      expect(router.body.rule).toContain("!PathPrefix(`/ws`)");
      expect(router.body.rule).toContain("!PathPrefix(`/metrics`)");
      expect(router.body.rule).toContain("!PathPrefix(`/admin`)");
      const chain = middlewareChain(router.body);
      expect(chain.some((m) => "compress" in m)).toBe(true);
      expect(chain.some((m) => "headers" in m)).toBe(true);
      const limits = chain.filter((m) => "rateLimit" in m).map((m) => m.rateLimit);
      expect(limits).toHaveLength(1);
      expect(ratePerSecond(limits[0])).toBe(10);
      expect(limits[0].sourceCriterion.ipStrategy).toBeDefined();
    }
  });

  test("one service per color, on the compose service name and port, health-checked on /health/ready", async () => {
    const compose = await readYaml(join(repoRoot, "docker-compose.yml"));
    for (const color of ["blue", "green"]) {
      const name = `websocket-${color}`;
      const lb = services.find((s) => s.name === name)!.body.loadBalancer;
      expect(lb.servers).toEqual([{ url: `http://${name}:3001` }]);
      expect(lb.healthCheck.path).toBe("/health/ready");
      expect(compose.services[name]).toBeDefined();
      expect(services.find((s) => s.name === name)!.file).toBe("services-blue-green.yml");
    }
  });
});

// The schemas hold the keys this repository uses; only Traefik itself proves it loads them. Where a
// Traefik v3 binary is available (TRAEFIK_BIN), it runs on a copy of traefik/dynamic and its API
// must list every router of the files as enabled.
const traefikBin = process.env.TRAEFIK_BIN;
if (!traefikBin)
  console.log("note: TRAEFIK_BIN is not set; skipping the check that a real Traefik loads traefik/dynamic");
describe.skipIf(!traefikBin)("a real Traefik (TRAEFIK_BIN)", () => {
  test("loads traefik/dynamic: every router enabled, every middleware and service known", async () => {
    const dir = mkdtempSync(join(tmpdir(), "traefik-real-"));
    cpSync(dynamicDir, join(dir, "dynamic"), { recursive: true });
    const [web, websecure, api] = [freePort(), freePort(), freePort()];
    const config = {
      entryPoints: {
        web: { address: `127.0.0.1:${web}` },
        websecure: { address: `127.0.0.1:${websecure}`, http: { tls: {} } },
        traefik: { address: `127.0.0.1:${api}` },
      },
      providers: { file: { directory: join(dir, "dynamic"), watch: true } },
      api: { insecure: true },
      log: { level: "ERROR" },
    };
    writeFileSync(join(dir, "traefik.yml"), JSON.stringify(config));
    const proc = Bun.spawn([traefikBin!, `--configFile=${join(dir, "traefik.yml")}`], {
      stdout: "pipe",
      stderr: "pipe",
    });
    try {
      const expected = routers.map((r) => `${r.name}@file`).sort();
      let listed: { name: string; status: string; error?: string[] }[] = [];
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        try {
          listed = await (await fetch(`http://127.0.0.1:${api}/api/http/routers`)).json();
          if (listed.filter((r) => r.name.endsWith("@file")).length === expected.length) break;
        } catch {
          // Not listening yet.
        }
        await Bun.sleep(100);
      }
      const fileRouters = listed.filter((r) => r.name.endsWith("@file"));
      expect(fileRouters.map((r) => r.name).sort()).toEqual(expected);
      expect(fileRouters.filter((r) => r.status !== "enabled")).toEqual([]);
      const known: { name: string; status: string }[] = await (
        await fetch(`http://127.0.0.1:${api}/api/http/middlewares`)
      ).json();
      expect(known.filter((m) => m.name.endsWith("@file") && m.status !== "enabled")).toEqual([]);
    } finally {
      proc.kill();
      await proc.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
