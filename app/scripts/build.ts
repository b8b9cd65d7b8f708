// Builds the client package (client/dist: JavaScript and .d.ts), the browser bundle of the test page
// (public/chat.js, from client/page/main.ts, which imports the package's build as any app would),
// then compiles the server into one executable, dist/realtime-server, with app/public embedded.
// Usage: bun run build [--outfile path]      everything
//        bun run build --client              the package and the page bundle only (bun run build:client)

import { join, sep } from "node:path";
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

// Scripts under public/ are embedded as they are. A `.js: "file"` loader would apply to the server's
// own dependencies too and break its bundle, so for scripts the file loader is chosen by path.
const embedPublicScripts: BunPlugin = {
  name: "embed-public-scripts",
  setup(build) {
    const escaped = (publicDir + sep).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    build.onLoad({ filter: new RegExp(`^${escaped}.*\\.(js|mjs|map)$`) }, async (args) => ({
      contents: new Uint8Array(await Bun.file(args.path).arrayBuffer()),
      loader: "file",
    }));
  },
};

const assets = [...new Glob("public/**/*").scanSync({ cwd: root, onlyFiles: true })].sort();
started = performance.now();
const result = await Bun.build({
  // The SQLite writer runs in a worker thread: a worker's file is an entrypoint of its own.
  entrypoints: [
    join(root, "src/index.ts"),
    join(root, "src/store/sqlite-writer.ts"),
    ...assets.map((a) => join(root, a)),
  ],
  compile: { outfile },
  minify: true,
  // Embedded files keep their path under public/ so the server can find them by name.
  naming: { asset: "[dir]/[name].[ext]" },
  loader: { ".html": "file", ".css": "file", ".svg": "file", ".png": "file", ".ico": "file" },
  plugins: [embedPublicScripts],
  root,
  define: { __APP_VERSION__: JSON.stringify(pkg.version) },
});
if (!result.success) fail(result.logs);
console.log(`built ${outfile} (${assets.length} embedded files) in ${Math.round(performance.now() - started)} ms`);
