// app/Dockerfile: there is no Docker engine in CI, so these read the file for the promises the image
// makes (issue 3, "Single binary and image") and that compose and the deploy script rely on.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import pkg from "../../package.json";

const appRoot = join(import.meta.dir, "..", "..");
const dockerfile = await Bun.file(join(appRoot, "Dockerfile")).text();
// Continuation lines joined, comments dropped: one instruction per entry.
const instructions = dockerfile
  .replace(/\\\n/g, " ")
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith("#"));
const all = (keyword: string) => instructions.filter((l) => l.toUpperCase().startsWith(`${keyword} `));
const stages = all("FROM");

describe("app/Dockerfile", () => {
  test("builds with the Bun version pinned in package.json, in a separate stage", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(stages.some((l) => l.startsWith(`FROM oven/bun:${pkg.devDependencies.bun} `))).toBe(true);
    expect(instructions).toContain("RUN bun run build");
  });

  test("installs dependencies from package-lock.json", () => {
    expect(instructions.some((l) => /^RUN npm ci\b/.test(l))).toBe(true);
  });

  test("the runtime stage is slim and runs the compiled binary as a non-root user", () => {
    const runtimeStart = instructions.lastIndexOf(stages.at(-1)!);
    const runtime = instructions.slice(runtimeStart);
    expect(stages.at(-1)).toMatch(/slim/);
    expect(runtime).toContain("COPY --from=build /app/dist/realtime-server /usr/local/bin/realtime-server");
    const user = runtime.filter((l) => l.startsWith("USER ")).at(-1);
    expect(user).toBeDefined();
    expect(user).not.toMatch(/^USER (root|0)(:|$)/);
    expect(runtime).toContain('ENTRYPOINT ["/usr/local/bin/realtime-server"]');
  });

  test("health check on /health/ready, SIGTERM to stop, port 3001, writable LOG_DIR", () => {
    const healthcheck = all("HEALTHCHECK");
    expect(healthcheck).toHaveLength(1);
    expect(healthcheck[0]).toContain("/health/ready");
    expect(all("STOPSIGNAL")).toEqual(["STOPSIGNAL SIGTERM"]);
    expect(all("EXPOSE")).toEqual(["EXPOSE 3001"]);
    expect(dockerfile).toContain("LOG_DIR=/var/log/realtime-chat");
    expect(dockerfile).toMatch(/chown chat:chat \/var\/log\/realtime-chat/);
  });

  test(".dockerignore keeps local builds and dependencies out of the context", async () => {
    const ignored = (await Bun.file(join(appRoot, ".dockerignore")).text()).split("\n").map((l) => l.trim());
    for (const entry of ["node_modules", "dist", "test"]) expect(ignored).toContain(entry);
  });
});
