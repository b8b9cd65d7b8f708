// Stress: VUS users (default 2,000) held for DURATION (default 10 minutes) after a short ramp-up.
//   WS_URL=ws://127.0.0.1:3001 k6 run app/loadtest/stress.js
//   VUS=2000 DURATION=10m MSG_RATE=0.2 ROOM_SIZE=10 k6 run app/loadtest/stress.js
import { env, loadConfig } from "./lib/config.js";
import { deadline, rampingOptions, session } from "./lib/scenario.js";

const config = loadConfig({ vus: 2000, duration: "10m", roomSize: 10, msgRate: 0.2, session: "120s" });
const stages = [
  { duration: env("RAMP_UP", "1m"), target: config.vus },
  { duration: config.duration, target: config.vus },
  { duration: env("RAMP_DOWN", "20s"), target: 0 },
];

export const options = rampingOptions("stress", config, stages);

export function setup() {
  return deadline(stages);
}

export default function (data) {
  session(config, data);
}
