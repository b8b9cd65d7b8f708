// Spike: BASE_VUS users (default 100) chat quietly, then VUS (default 5,000) arrive within SPIKE_UP
// (default 10 s), stay for DURATION (default 1 m), leave as fast, and the base load goes on to show recovery.
//   WS_URL=ws://127.0.0.1:3001 k6 run app/loadtest/spike.js
//   VUS=5000 BASE_VUS=100 SPIKE_UP=10s DURATION=1m k6 run app/loadtest/spike.js
import { env, loadConfig, positiveInt } from "./lib/config.js";
import { deadline, rampingOptions, session } from "./lib/scenario.js";

const config = loadConfig({ vus: 5000, duration: "1m", roomSize: 10, msgRate: 0.2, session: "60s" });
const base = positiveInt("BASE_VUS", 100);
const spikeUp = env("SPIKE_UP", "10s");
const stages = [
  { duration: "30s", target: base },
  { duration: spikeUp, target: config.vus },
  { duration: config.duration, target: config.vus },
  { duration: spikeUp, target: base },
  { duration: "30s", target: base },
];

export const options = rampingOptions("spike", config, stages, base);

export function setup() {
  return deadline(stages);
}

export default function (data) {
  session(config, data);
}
