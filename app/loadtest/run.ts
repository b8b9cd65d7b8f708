// `bun run loadtest [scenario] [k6 run options...]`: runs app/loadtest/<scenario>.js (default: ramp)
// with the pinned k6 from scripts/lib.sh, passing the environment (WS_URL, VUS, DURATION, ...) through.
// Exits with k6's code: 0 when every threshold passed, 99 when one failed.
import { existsSync } from "node:fs";
import { join } from "node:path";

const here = import.meta.dir;
const root = join(here, "..", "..");
const [first, ...rest] = process.argv.slice(2);
const named = first !== undefined && !first.startsWith("-");
const scenario = named ? first : "ramp";
const script = join(here, scenario.endsWith(".js") ? scenario : `${scenario}.js`);
if (!existsSync(script)) {
  console.error(`unknown scenario ${JSON.stringify(scenario)}: expected smoke, ramp, stress or spike`);
  process.exit(2);
}

const found = Bun.spawnSync(["bash", "-c", '. scripts/lib.sh && k6_bin "$PWD"'], { cwd: root, stderr: "inherit" });
if (found.exitCode !== 0) process.exit(1);
const k6 = found.stdout.toString().trim();

// --no-usage-report: a load test reports to nobody but the person running it.
const args = ["run", "--no-usage-report", ...(named ? rest : process.argv.slice(2)), script];
console.error(`${k6} ${args.join(" ")}`);
const proc = Bun.spawn([k6, ...args], { stdio: ["inherit", "inherit", "inherit"] });
process.exit(await proc.exited);
