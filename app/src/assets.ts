import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Files embedded by `bun build --compile` are named under this folder (see scripts/build.ts). */
const EMBED_ROOT = "public/";

/**
 * The folder the static plugin serves. From source it is app/public. The compiled binary carries
 * the page inside itself: its embedded files are written once to a private temporary folder, so the
 * binary needs no public/ folder beside it. Returns the folder and a cleanup to run at exit.
 */
export async function resolvePublicDir(): Promise<{ dir: string; cleanup: () => void }> {
  const embedded = (Bun.embeddedFiles as (Blob & { name: string })[]).filter((f) => f.name.startsWith(EMBED_ROOT));
  if (embedded.length === 0) {
    const source = join(dirname(fileURLToPath(import.meta.url)), "..", "public");
    if (existsSync(source)) return { dir: source, cleanup: () => {} };
    throw new Error(`the test page folder ${source} is missing`);
  }
  const dir = mkdtempSync(join(tmpdir(), "realtime-chat-public-"));
  for (const file of embedded) {
    const target = join(dir, file.name.slice(EMBED_ROOT.length));
    mkdirSync(dirname(target), { recursive: true });
    await Bun.write(target, file);
  }
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
