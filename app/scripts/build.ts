// Builds the client package (client/dist: JavaScript and .d.ts), the browser bundle of the test page
// (public/chat.js, from client/page/main.ts, which imports the package's build as any app would),
// then compiles the server into one executable, dist/realtime-server, with app/public embedded.
// Usage: bun run build [--outfile path]      everything
//        bun run build --client              the package and the page bundle only (bun run build:client)

import { join } from "node:path";
import { type BunPlugin, Glob } from "bun";
import clientPkg from "../client/package.json";
import pkg from "../package.json";

const root = join(import.meta.dir, "..");
const publicDir = join(root, "public");
const outIndex = process.argv.indexOf("--outfile");
const outfile = outIndex > 0 ? process.argv[outIndex + 1]! : join(root, "dist", "realtime-server");
const clientOnly = process.argv.includes("--client");

function fail(logs: readonly unknown[]): never {
  for (const log of logs) console.error(log);
  process.exit(1);
}

let started = performance.now();
const tsc = Bun.spawnSync([join(root, "node_modules/.bin/tsc"), "-p", "tsconfig.build.json"], {
  cwd: join(root, "client"),
  stdout: "inherit",
  stderr: "inherit",
});
if (tsc.exitCode !== 0) fail([`tsc -p client/tsconfig.build.json exited with ${tsc.exitCode}`]);
console.log(
  `built client/dist (${clientPkg.name} ${clientPkg.version}) in ${Math.round(performance.now() - started)} ms`,
);

// The page imports the package by name. The entry its `exports` map gives for `import` is used, so
// the page runs on the same build an app installs; the typecheck maps the name to the source instead.
const clientPackage: BunPlugin = {
  name: "client-package",
  setup(build) {
    const escaped = clientPkg.name.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
    build.onResolve({ filter: new RegExp(`^${escaped}$`) }, () => ({
      path: join(root, "client", clientPkg.exports["."].import),
    }));
  },
};

started = performance.now();
const client = await Bun.build({
  entrypoints: [join(root, "client/page/main.ts")],
  outdir: publicDir,
  naming: "chat.js",
  target: "browser",
  format: "esm",
  minify: true,
  sourcemap: "linked",
  plugins: [clientPackage],
});
if (!client.success) fail(client.logs);
console.log(`built public/chat.js in ${Math.round(performance.now() - started)} ms`);
if (clientOnly) process.exit(0);

// Every file under public/ is embedded as it is, through one module that imports each with
// `type: "file"`: the form every Bun release embeds (a file given as an entrypoint with the file
// loader is not embedded by every release), and one that leaves the server's own imports to their
// usual loaders. The module is an entrypoint, so its imports stay in the bundle; it never runs.
const assets = [...new Glob("public/**/*").scanSync({ cwd: root, onlyFiles: true })].sort();
const EMBED_ENTRY = "embedded-public-files";
const embedPublicFiles: BunPlugin = {
  name: "embed-public-files",
  setup(build) {
    build.onResolve({ filter: new RegExp(`^${EMBED_ENTRY}$`) }, () => ({ path: EMBED_ENTRY, namespace: "embed" }));
    build.onLoad({ filter: /.*/, namespace: "embed" }, () => ({
      contents: [
        ...assets.map((a, i) => `import f${i} from ${JSON.stringify(join(root, a))} with { type: "file" };`),
        `export default [${assets.map((_, i) => `f${i}`).join(", ")}];`,
      ].join("\n"),
      loader: "js",
    }));
  },
};

started = performance.now();
const result = await Bun.build({
  // The SQLite writer runs in a worker thread: a worker's file is an entrypoint of its own.
  entrypoints: [join(root, "src/index.ts"), join(root, "src/store/sqlite-writer.ts"), EMBED_ENTRY],
  compile: { outfile },
  minify: true,
  // Embedded files keep their path under public/ so the server can find them by name.
  naming: { asset: "[dir]/[name].[ext]" },
  plugins: [embedPublicFiles],
  root,
  define: { __APP_VERSION__: JSON.stringify(pkg.version) },
});
if (!result.success) fail(result.logs);
console.log(`built ${outfile} (${assets.length} embedded files) in ${Math.round(performance.now() - started)} ms`);
