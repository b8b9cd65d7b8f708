import { Elysia } from "elysia";
import type { Metrics } from "../observability/metrics";
import { jsonError } from "./errors";
import { hasBearer, isPrivateAddress } from "./net";

/**
 * Prometheus text. Without METRICS_TOKEN only loopback and private addresses (the compose network,
 * a scraper on the host) may read it; with a token, only requests bearing it.
 */
export function metricsRoute(metrics: Metrics, token: string) {
  return new Elysia({ name: "metrics" }).get("/metrics", async ({ request, server }) => {
    if (token) {
      if (!hasBearer(request.headers.get("authorization"), token)) {
        return jsonError(401, "unauthorized", "a valid bearer token is required", { "www-authenticate": "Bearer" });
      }
    } else if (!isPrivateAddress(server?.requestIP(request)?.address)) {
      return jsonError(
        403,
        "forbidden",
        "metrics are served to private addresses only; set METRICS_TOKEN to allow others",
      );
    }
    return new Response(await metrics.registry.metrics(), {
      headers: { "content-type": metrics.registry.contentType },
    });
  });
}
