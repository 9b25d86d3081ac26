import { type Server, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { HealthHandler } from "./health.ts";
import { pathOf } from "./http.ts";
import type { MetricsHandler } from "./metrics.ts";

export interface HealthServer {
  /** The port it listens on (the one asked for, or the one the OS chose for 0). */
  readonly port: number;
  close(): Promise<void>;
}

/** The supervisor's opt-in health port: /livez and /readyz, and /metrics, on a plain http server. */
export async function startHealthServer(
  handlers: { health: HealthHandler; metrics: MetricsHandler },
  options: { port: number; host: string },
): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    if (pathOf(req) === "/metrics") void handlers.metrics.node(req, res);
    else void handlers.health.node(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
