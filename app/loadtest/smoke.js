// Smoke: a few users chatting for about 30 s. The deploy gate runs it against the target color and
// trusts its exit code: 0 when every threshold passes, 99 (k6's code for failed thresholds) otherwise.
//   k6 run app/loadtest/smoke.js                      # 5 users, 30 s, http://127.0.0.1:3001
//   WS_URL=ws://127.0.0.1:3101 VUS=4 DURATION=5s k6 run app/loadtest/smoke.js
import { sessionUntil } from "./lib/chat.js";
import { loadConfig } from "./lib/config.js";
import { systemTags, thresholds } from "./lib/metrics.js";

const config = loadConfig({ vus: 5, duration: "30s", roomSize: 5, msgRate: 1 });

export const options = {
  scenarios: {
    smoke: {
      executor: "constant-vus",
      vus: config.vus,
      duration: config.duration,
      // A session ends with the scenario; the grace only covers the close handshake.
      gracefulStop: "10s",
    },
  },
  thresholds,
  systemTags,
};

export function setup() {
  return { endsAt: Date.now() + config.durationMs };
}

export default function (data) {
  sessionUntil({ ...config, sessionMs: Math.min(config.sessionMs, config.durationMs) }, data.endsAt);
}
