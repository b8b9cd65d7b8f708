// Ramp: users arrive steadily up to VUS (default 1,000), stay for DURATION, then leave.
// Each user reconnects every SESSION (default 60 s), so connects go on during the whole run.
//   k6 run app/loadtest/ramp.js
//   WS_URL=ws://127.0.0.1:3001 VUS=1000 RAMP_UP=2m DURATION=1m k6 run app/loadtest/ramp.js
import { env, loadConfig } from "./lib/config.js";
import { deadline, rampingOptions, session } from "./lib/scenario.js";

const config = loadConfig({ vus: 1000, duration: "1m", roomSize: 10, msgRate: 0.2, session: "60s" });
const stages = [
  { duration: env("RAMP_UP", "2m"), target: config.vus },
  { duration: config.duration, target: config.vus },
  { duration: env("RAMP_DOWN", "30s"), target: 0 },
];

export const options = rampingOptions("ramp", config, stages);

export function setup() {
  return deadline(stages);
}

export default function (data) {
  session(config, data);
}
