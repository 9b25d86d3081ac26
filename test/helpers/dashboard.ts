import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Dashboard } from "../../src/web/index.ts";

/**
 * The two ways an application serves the dashboard, behind one interface, so one contract
 * runs against both: the Web `fetch` handler called directly (Hono, Next.js, Bun) and the
 * Node `(req, res)` handler behind a real http server (plain http, Express, Fastify, Koa).
 */
export interface Transport {
  name: string;
  origin: string;
  request(path: string, init?: RequestInit): Promise<Response>;
  close(): Promise<void>;
}

export function fetchTransport(dashboard: Dashboard): Transport {
  const origin = "http://dashboard.test";
  return {
    name: "fetch handler",
    origin,
    request: (path, init) => dashboard.fetch(new Request(`${origin}${path}`, init)),
    close: async () => {},
  };
}

/**
 * With `mountedAt`, the server does what Express's `app.use(path, handler)` does: it strips
 * the mount path from `req.url` and keeps the full URL in `req.originalUrl`.
 */
export async function nodeTransport(dashboard: Dashboard, mountedAt?: string): Promise<Transport> {
  const server: Server = createServer((req, res) => {
    if (mountedAt !== undefined && req.url?.startsWith(mountedAt)) {
      Object.assign(req, { originalUrl: req.url });
      req.url = req.url.slice(mountedAt.length) || "/";
    }
    void dashboard.node(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    name: mountedAt === undefined ? "node handler" : `node handler mounted at ${mountedAt}`,
    origin,
    request: (path, init) => fetch(`${origin}${path}`, { redirect: "manual", ...init }),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The CSRF token a page carries (its `<meta name="csrf-token">`). */
export function csrfOf(page: string): string {
  const match = /<meta name="csrf-token" content="([^"]+)" ?\/?>/.exec(page);
  if (!match) throw new Error("the page has no CSRF token");
  return match[1]!;
}
