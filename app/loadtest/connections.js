// Connections at scale: VUS users each hold SOCKETS WebSocket connections (default 500 x 20 = 10,000)
// from one k6 process, with chat traffic on every socket: each is a user in a room of ROOM_SIZE,
// sending MSG_RATE messages a second. A VU opening many sockets keeps k6's memory per connection low
// (a VU is a whole JavaScript runtime). Sockets open at CONNECT_RATE a second in total over the ramp,
// stay open for DURATION, then close; the thresholds are those of every scenario.
//   WS_URL=ws://127.0.0.1:3001 k6 run app/loadtest/connections.js
//   VUS=4 SOCKETS=5 DURATION=10s k6 run app/loadtest/connections.js
// The server must allow the connections: MAX_CONNECTIONS, CONNECT_RATE_PER_IP and CONNECT_BURST_PER_IP
// (every socket comes from the load generator's one address), and enough open files on both sides.
import { setTimeout } from "k6/timers";
import { chatSession, vuIndex } from "./lib/chat.js";
import { loadConfig, positiveInt } from "./lib/config.js";
import { systemTags, thresholds } from "./lib/metrics.js";

const config = loadConfig({ vus: 500, duration: "1m", roomSize: 10, msgRate: 0.05 });
const sockets = positiveInt("SOCKETS", 20);
const connectRate = positiveInt("CONNECT_RATE", 500);
const total = config.vus * sockets;
// The ramp lasts as long as opening every socket at CONNECT_RATE takes.
const rampMs = Math.ceil((total / connectRate) * 1000);

export const options = {
  scenarios: {
    connections: {
      executor: "per-vu-iterations",
      vus: config.vus,
      iterations: 1,
      maxDuration: `${Math.ceil((rampMs + config.durationMs) / 1000) + 30}s`,
      gracefulStop: "10s",
    },
  },
  thresholds,
  systemTags,
};

export function setup() {
  const start = Date.now();
  return { start, endsAt: start + rampMs + config.durationMs };
}

export default function (data) {
  const vu = vuIndex();
  // Socket k of VU v is user v + k * VUS: its connect slot spreads the sockets evenly over the ramp,
  // and consecutive users (one room) belong to different VUs.
  for (let k = 0; k < sockets; k++) {
    const index = vu + k * config.vus;
    const at = data.start + (index / total) * rampMs;
    setTimeout(
      () => chatSession({ ...config, sessionMs: data.endsAt - at }, data.endsAt, index),
      Math.max(0, at - Date.now()),
    );
  }
}
