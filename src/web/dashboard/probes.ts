import type pg from "pg";
import { type HealthHandler, createHealthHandler } from "../health.ts";
import { type MetricsHandler, createMetricsHandler } from "../metrics.ts";

/**
 * The operator endpoints a dashboard serves under its mount path besides its pages:
 * /metrics (createMetricsHandler) and /livez, /readyz (createHealthHandler), on the
 * dashboard's pool. So `pgbus web` and a dashboard mounted in an application answer a
 * scraper and a probe with the same bytes as the standalone handlers.
 */

export const PROBE_PATHS = ["/metrics", "/livez", "/readyz"] as const;

export interface Probes {
  /** The answer for `path` (relative to the mount path), or null when it is not a probe's. */
  answer(path: string, request: Request, headers: Record<string, string>): Promise<Response> | null;
  close(): Promise<void>;
}

export function createProbes(pool: pg.Pool, staleAfterMs: number): Probes {
  const metrics: MetricsHandler = createMetricsHandler({ pool });
  const health: HealthHandler = createHealthHandler({ pool, staleAfterMs });
  return {
    answer(path, request, headers) {
      if (!(PROBE_PATHS as readonly string[]).includes(path)) return null;
      const handler = path === "/metrics" ? metrics : health;
      return handler.fetch(request).then((response) => {
        // The dashboard's headers (nosniff, no framing, no caching), the handler's content type.
        const merged = new Headers(headers);
        response.headers.forEach((value, name) => merged.set(name, value));
        return new Response(response.body, { status: response.status, headers: merged });
      });
    },
    async close() {
      await metrics.close();
      await health.close();
    },
  };
}
