// Builds the ramping scenarios (ramp, stress, spike) from stages, so each script only states its shape.
import { sessionUntil } from "./chat.js";
import { parseDuration, seconds } from "./config.js";
import { systemTags, thresholds } from "./metrics.js";

/** Options for one ramping-vus scenario named `name`; `stages` are k6 stages ({ duration, target }). */
export function rampingOptions(name, config, stages, startVUs = 0) {
  // Long enough for a session that started just before a stage ended to close on its own.
  const grace = seconds(config.sessionMs + 10_000);
  return {
    scenarios: {
      [name]: { executor: "ramping-vus", startVUs, stages, gracefulRampDown: grace, gracefulStop: grace },
    },
    thresholds,
    systemTags,
  };
}

export function totalMs(stages) {
  return stages.reduce((sum, stage) => sum + parseDuration(stage.duration), 0);
}

/** setup() for a scenario: the epoch ms at which sessions close so the run ends with its stages. */
export function deadline(stages) {
  return { endsAt: Date.now() + totalMs(stages) };
}

export function session(config, data) {
  sessionUntil(config, data.endsAt);
}
