import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { ValidationError } from "../../errors.ts";
import { type Dashboard, type DashboardOptions, createDashboard } from "./dashboard.ts";
import type { AuthorizeHook } from "./security.ts";

/**
 * The dashboard on a server of its own (`pgbus web`). Without an authorize hook it serves
 * only a loopback address, where everyone who can reach it is on the machine; anything
 * else must say who may see and act.
 */

export interface ServeOptions extends Omit<DashboardOptions, "authorize"> {
  host: string;
  port: number;
  /** Required on a non-loopback host. On loopback without it, every request gets `anonymousRole`. */
  authorize?: AuthorizeHook;
  /** The role of every request when no authorize hook is given (loopback only). Default "admin". */
  anonymousRole?: "admin" | "read_only";
}

export interface ServedDashboard {
  url: string;
  dashboard: Dashboard;
  close(): Promise<void>;
}

export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, "").toLowerCase();
  return bare === "localhost" || bare === "::1" || /^127(\.\d{1,3}){3}$/.test(bare);
}

export async function serveDashboard(options: ServeOptions): Promise<ServedDashboard> {
  const { host, port, authorize, anonymousRole = "admin", ...rest } = options;
  if (!authorize && !isLoopback(host))
    throw new ValidationError(
      "INVALID_OPTION",
      `refusing to serve the dashboard on ${host} without an authorize hook: anyone who reaches it could purge queues. ` +
        "Listen on 127.0.0.1 (the default), or pass --authorize <module> exporting authorize(request)",
    );
  if (!Number.isInteger(port) || port < 0 || port > 65_535)
    throw new ValidationError("INVALID_OPTION", `invalid port ${String(port)}: an integer from 0 to 65535`);
  const dashboard = createDashboard({ ...rest, authorize: authorize ?? (() => anonymousRole) });
  const server: Server = createServer((req, res) => {
    // Browsers ask the server's root for an icon whatever the page says; nothing to give.
    if (req.url === "/favicon.ico") return void res.writeHead(204).end();
    void dashboard.node(req, res);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, resolve);
    });
  } catch (error) {
    await dashboard.close();
    throw error;
  }
  const address = server.address() as AddressInfo;
  const shown = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    url: `http://${shown}:${address.port}${dashboard.basePath}/`,
    dashboard,
    async close() {
      await dashboard.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
