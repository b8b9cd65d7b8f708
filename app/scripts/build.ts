// Compiles the server into one executable, dist/realtime-server, with app/public embedded.
// Usage: bun run build [--outfile path]
import { Glob } from "bun";
import { join } from "node:path";
import pkg from "../package.json";

const root = join(import.meta.dir, "..");
const outIndex = process.argv.indexOf("--outfile");
const outfile = outIndex > 0 ? process.argv[outIndex + 1]! : join(root, "dist", "realtime-server");

const assets = [...new Glob("public/**/*").scanSync({ cwd: root, onlyFiles: true })].sort();
const started = performance.now();
const result = await Bun.build({
  entrypoints: [join(root, "src/index.ts"), ...assets.map((a) => join(root, a))],
  compile: { outfile },
  minify: true,
  // Embedded files keep their path under public/ so the server can find them by name.
  naming: { asset: "[dir]/[name].[ext]" },
  loader: { ".html": "file", ".css": "file", ".svg": "file", ".png": "file", ".ico": "file" },
  root,
  define: { __APP_VERSION__: JSON.stringify(pkg.version) },
});
if (!result.success) {
  for (const log of result.logs) console.error(log);
  process.exit(1);
}
console.log(`built ${outfile} (${assets.length} embedded files) in ${Math.round(performance.now() - started)} ms`);
