import { type Server, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { HealthHandler } from "./health.ts";

export interface HealthServer {
  /** The port it listens on (the one asked for, or the one the OS chose for 0). */
  readonly port: number;
  close(): Promise<void>;
}

/** The supervisor's opt-in health port: /livez and /readyz on a plain http server. */
export async function startHealthServer(handler: HealthHandler, options: { port: number; host: string }): Promise<HealthServer> {
  const server: Server = createServer((req, res) => void handler.node(req, res));
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
