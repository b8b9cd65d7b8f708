// An invalid environment variable stops the server before anything starts: exit code 2 and one
// line naming the variable and what it accepts.
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, loadConfig } from "../src/config";
import { BINARY, freePort } from "./helpers/binary";

const APP = join(import.meta.dir, "..");

async function run(command: string[], env: Record<string, string>) {
  const proc = Bun.spawn(command, {
    cwd: APP,
    env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", PORT: String(freePort()), ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, stdout, stderr] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  return { code, stdout, stderr };
}

const cases: [string, string, string][] = [
  ["PORT", "abc", "an integer from 0 to 65535"],
  ["PORT", "70000", "an integer from 0 to 65535"],
  ["MAX_CONNECTIONS", "0", "an integer from 1 to 1000000"],
  ["HEARTBEAT_INTERVAL", "fast", "a whole number of milliseconds from 100 to 600000"],
  ["DRAIN_TIMEOUT", "30s", "a whole number of milliseconds from 0 to 3600000"],
  ["SESSION_TTL", "2m", "a whole number of seconds from 1 to 604800"],
  ["HOST", "1.2.3.4.5", "an IP address or a host name"],
  ["HOST", "chat_server", "an IP address or a host name"],
  ["TRUSTED_PROXIES", "10.0.0.0/33", "a comma-separated list of IP addresses, CIDRs (10.0.0.0/8, fd00::/8) or private"],
  ["TRUSTED_PROXIES", "traefik", "a comma-separated list of IP addresses, CIDRs (10.0.0.0/8, fd00::/8) or private"],
  ["COLOR", "purple", "one of blue, green, none"],
  ["LOG_LEVEL", "loud", "one of error, warn, info"],
  ["REDIS_URL", "http://localhost:6379", "a redis:// or rediss:// URL"],
  ["REDIS_CLUSTER_NODES", "10.0.0.1:7000,,10.0.0.2:7000", "comma-separated host:port seed nodes"],
  ["REDIS_CLUSTER_NODES", "10.0.0.1:99999", "comma-separated host:port seed nodes"],
  ["INSTANCE_ID", "has space", "1-64 characters"],
  ["STORE", "postgres", "one of sqlite, memory, or empty"],
  ["MESSAGE_RETENTION_DAYS", "-1", "an integer from 0 to 36500"],
  ["SQLITE_SYNCHRONOUS", "off", "one of full, normal"],
];

for (const [name, value, accepts] of cases) {
  test(`${name}=${value} from source: exit 2 and one line naming ${name}`, async () => {
    const { code, stdout, stderr } = await run([process.execPath, "run", "src/index.ts"], { [name]: value });
    expect(code).toBe(2);
    const lines = stderr.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`${name}=${JSON.stringify(value)}`);
    expect(lines[0]).toContain(accepts);
    // Nothing started: no log line, so no listener either.
    expect(stdout).toBe("");
  });
}

test("the compiled binary refuses an invalid variable the same way, with nothing listening", async () => {
  expect(existsSync(BINARY)).toBe(true);
  const port = freePort();
  const { code, stdout, stderr } = await run([BINARY], { PORT: String(port), DRAIN_TIMEOUT: "-1" });
  expect(code).toBe(2);
  expect(stderr).toBe(
    'config error: invalid DRAIN_TIMEOUT="-1": expected a whole number of milliseconds from 0 to 3600000\n',
  );
  expect(stdout).toBe("");
  await expect(fetch(`http://127.0.0.1:${port}/health`)).rejects.toThrow();
});

describe("STORE", () => {
  test("empty picks SQLite for one instance and the hot history alone with Redis", () => {
    expect(loadConfig({}).store).toBe("sqlite");
    expect(loadConfig({ REDIS_URL: "redis://127.0.0.1:6379" }).store).toBe("memory");
    expect(loadConfig({ STORE: "memory" }).store).toBe("memory");
  });

  test("sqlite with REDIS_URL is refused: each instance would keep a history of its own", () => {
    const expected =
      'invalid STORE="sqlite": expected memory or empty when REDIS_URL or REDIS_CLUSTER_NODES is set (SQLite is one instance\'s file)';
    expect(() => loadConfig({ STORE: "sqlite", REDIS_URL: "redis://127.0.0.1:6379" })).toThrow(expected);
    expect(() => loadConfig({ STORE: "sqlite", REDIS_CLUSTER_NODES: "127.0.0.1:7000" })).toThrow(expected);
    expect(loadConfig({ REDIS_CLUSTER_NODES: "127.0.0.1:7000" }).store).toBe("memory");
  });
});

describe("DATABASE_URL", () => {
  test("takes a postgres URL with REDIS_URL, and never prints it back (it may hold a password)", () => {
    const url = "postgres://chat:s3cret@db:5432/chat?sslmode=require";
    expect(loadConfig({ DATABASE_URL: url, REDIS_URL: "redis://127.0.0.1:6379" }).databaseUrl).toBe(url);
    expect(() => loadConfig({ DATABASE_URL: "mysql://chat:s3cret@db/chat" })).toThrow(
      'invalid DATABASE_URL="(hidden: it may hold a password)": expected a postgres:// or postgresql:// URL',
    );
  });

  test("without Redis is refused: messages reach PostgreSQL from the Redis room logs", () => {
    const url = "postgres://chat:s3cret@db:5432/chat";
    expect(() => loadConfig({ DATABASE_URL: url })).toThrow(
      'invalid DATABASE_URL="(hidden)": expected REDIS_URL or REDIS_CLUSTER_NODES to be set too (messages are written behind from Redis)',
    );
    expect(loadConfig({ DATABASE_URL: url, REDIS_CLUSTER_NODES: "127.0.0.1:7000" }).databaseUrl).toBe(url);
  });
});

describe("HOST", () => {
  test("takes an IPv4 or IPv6 address or a host name", () => {
    for (const host of [
      "0.0.0.0",
      "127.0.0.1",
      "::",
      "::1",
      "fd00::5",
      "localhost",
      "websocket-blue",
      "chat.example.com",
    ])
      expect(loadConfig({ HOST: host }).host).toBe(host);
  });

  test("refuses what is neither", () => {
    for (const host of [
      "1.2.3.4.5",
      "256.1.1.1",
      "10.0.0",
      "chat_server",
      "-chat",
      "chat-",
      "a..b",
      "http://chat",
      "::g",
    ])
      expect(() => loadConfig({ HOST: host }), host).toThrow(ConfigError);
  });
});

describe("TRUSTED_PROXIES", () => {
  test("takes IPv4 and IPv6 addresses, CIDRs of either, and private", () => {
    expect(loadConfig({ TRUSTED_PROXIES: "private, 10.0.0.0/8,172.18.0.2 ,::1, fd00::/8" }).trustedProxies).toEqual([
      "private",
      "10.0.0.0/8",
      "172.18.0.2",
      "::1",
      "fd00::/8",
    ]);
  });

  test("an invalid entry is named in the error, with what the list accepts", () => {
    for (const entry of ["10.0.0.0/33", "1.2.3", "privat", "10.0.0.1/8/8", "fd00::/129", "*", "10.0.0.0/"]) {
      try {
        loadConfig({ TRUSTED_PROXIES: `private,${entry}` });
        throw new Error(`${entry} was accepted`);
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        expect((error as Error).message).toBe(
          `invalid TRUSTED_PROXIES=${JSON.stringify(entry)}: expected a comma-separated list of IP addresses, CIDRs (10.0.0.0/8, fd00::/8) or private`,
        );
      }
    }
  });
});

describe("REDIS_CLUSTER_NODES", () => {
  test("takes host:port seeds, or URLs whose scheme and credentials apply to every node", () => {
    expect(loadConfig({ REDIS_CLUSTER_NODES: "10.0.0.1:7000, redis-b:7001,[::1]:7002" }).redisCluster).toEqual({
      nodes: [
        { host: "10.0.0.1", port: 7000 },
        { host: "redis-b", port: 7001 },
        { host: "::1", port: 7002 },
      ],
      username: "",
      password: "",
      tls: false,
    });
    expect(
      loadConfig({ REDIS_CLUSTER_NODES: "rediss://chat:s%40cret@a:7000,rediss://chat:s%40cret@b:7000,c:7000" })
        .redisCluster,
    ).toMatchObject({
      username: "chat",
      password: "s@cret",
      tls: true,
      nodes: [{ host: "a" }, { host: "b" }, { host: "c" }],
    });
    expect(loadConfig({}).redisCluster).toBeUndefined();
  });

  test("refuses URL entries that disagree, and REDIS_URL beside it, without showing a password", () => {
    const message = (env: Record<string, string>) => {
      try {
        loadConfig(env);
        return "accepted";
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        return (error as Error).message;
      }
    };
    const mixed = message({ REDIS_CLUSTER_NODES: "redis://u:secret1@a:7000,rediss://u:secret1@b:7000" });
    expect(mixed).toContain("the same scheme, user and password in every URL entry");
    expect(mixed).not.toContain("secret1");
    expect(message({ REDIS_CLUSTER_NODES: "a:7000", REDIS_URL: "redis://b:6379" })).toContain(
      "REDIS_URL to be empty when set",
    );
  });
});
