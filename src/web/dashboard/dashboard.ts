import { clientConfigOf } from "../../db/queryable.ts";
import { PgbusError, ValidationError } from "../../errors.ts";
import { type Logger, silentLogger } from "../../logger.ts";
import { type WebDatabaseOptions, openWebDatabase } from "../database.ts";
import { ACTIONS, type ActionName, type AuditEntry, type AuditHook, runAction } from "./actions.ts";
import { escapeHtml } from "./html.ts";
import { LiveHub, type LiveOptions } from "./live.ts";
import { type NodeHandler, toNodeHandler } from "./node.ts";
import type { PageContext } from "./pages/layout.ts";
import { createProbes } from "./probes.ts";
import type { RedactHook } from "./redaction.ts";
import { renderPage } from "./routes.ts";
import { type AuthorizeHook, CsrfTokens, type DashboardRole, newNonce, sameOrigin, securityHeaders } from "./security.ts";
import { DashboardStore } from "./store.ts";

/** Read and act through a bus's connection pool, a pool of yours, or a pool of 4 of its own on a connectionString. */
export interface DashboardOptions extends WebDatabaseOptions {
  /** Where the dashboard is mounted, e.g. "/admin/pgbus". Default "" (the root). */
  basePath?: string;
  /** Decides every request: "admin", "read_only", or false (401). Required: there is no open default. */
  authorize: AuthorizeHook;
  /** Called for every action, refused and failed ones included. */
  audit?: AuditHook;
  /** What to show instead of a payload (e.g. with secrets masked), on the jobs list and the job page. */
  redact?: RedactHook;
  /** Bound on every statement the dashboard runs. Default 5,000 ms. */
  statementTimeoutMs?: number;
  /** A process whose heartbeat is older gets a "stale" badge. Default 30,000 ms (pgbus start's staleProcessAfterMs). */
  staleProcessAfterMs?: number;
  /** Live updates: connection cap, coalescing, refresh and heartbeat intervals. */
  live?: Pick<LiveOptions, "maxConnections" | "coalesceMs" | "refreshMs" | "heartbeatMs">;
  /** Key of the CSRF tokens. Default: random per process (give one to share tokens across instances behind a load balancer). */
  csrfSecret?: string;
  logger?: Logger;
}

export interface Dashboard {
  /** The mount path, normalised ("" for the root). */
  readonly basePath: string;
  /** The Web handler: Hono, Next.js route handlers, Bun, Deno. */
  fetch(request: Request): Promise<Response>;
  /** The Node handler: http.createServer, Express, Fastify (reply.raw), Koa (ctx.req, ctx.res). */
  node: NodeHandler;
  /** Ends the live streams, the LISTEN connection and the dashboard's own pool (never the bus's or yours). */
  close(): Promise<void>;
}

const SPARKLINE_MINUTES = 30;
const SPARKLINE_CACHE_MS = 10_000;
const MAX_FORM_BYTES = 256 * 1024;

export function normalizeBasePath(path: string | undefined): string {
  const trimmed = (path ?? "").replace(/\/+$/, "");
  const dotted = trimmed.split("/").some((segment) => segment === "." || segment === "..");
  if (dotted || (trimmed !== "" && !/^(\/[A-Za-z0-9._~-]+)+$/.test(trimmed)))
    throw new ValidationError(
      "INVALID_OPTION",
      `invalid basePath ${JSON.stringify(path)}: "/" followed by path segments of A-Z, a-z, 0-9, ".", "_", "~", "-" (e.g. "/admin/pgbus")`,
    );
  return trimmed;
}

function textResponse(status: number, text: string, headers: Record<string, string>): Response {
  return new Response(`<!doctype html><meta charset="utf-8"><title>${status}</title><p>${escapeHtml(text)}</p>`, {
    status,
    headers: { ...headers, "content-type": "text/html; charset=utf-8" },
  });
}

/** Mounts the dashboard: pages, actions and the live stream, behind `authorize`. */
export function createDashboard(options: DashboardOptions): Dashboard {
  if (typeof options?.authorize !== "function")
    throw new ValidationError(
      "INVALID_OPTION",
      'createDashboard needs authorize(request) returning "admin", "read_only" or false; for a local-only dashboard pass () => "admin"',
    );
  const base = normalizeBasePath(options.basePath);
  const statementTimeoutMs = options.statementTimeoutMs ?? 5_000;
  const staleProcessAfterMs = options.staleProcessAfterMs ?? 30_000;
  // Its own pool's client-side bound comes after the server's statement_timeout, whose error says more.
  const database = openWebDatabase(options, "createDashboard", { max: 4, queryTimeoutMs: statementTimeoutMs + 1_000 });
  const pool = database.pool;
  const logger = options.logger ?? silentLogger;
  const store = new DashboardStore(pool, statementTimeoutMs);
  const probes = createProbes(pool, staleProcessAfterMs);
  const live = new LiveHub({ store, clientConfig: clientConfigOf(pool), logger, ...options.live });
  const csrf = new CsrfTokens(options.csrfSecret);
  let sparkCache: { at: number; key: string; value: Promise<{ archived: number[]; failed: number[] }> } | null = null;
  const deps = {
    store,
    redact: options.redact,
    staleAfterSec: staleProcessAfterMs / 1_000,
    sparklines(queues: readonly string[]) {
      const key = queues.join(",");
      if (!sparkCache || sparkCache.key !== key || Date.now() - sparkCache.at > SPARKLINE_CACHE_MS) {
        const value = store.sparklines(queues, SPARKLINE_MINUTES);
        value.catch(() => (sparkCache = null));
        sparkCache = { at: Date.now(), key, value };
      }
      return sparkCache.value;
    },
  };

  async function audit(entry: Omit<AuditEntry, "at">): Promise<void> {
    try {
      await options.audit?.({ ...entry, at: new Date() });
    } catch (error) {
      logger.error({ err: (error as Error).message, action: entry.action }, "dashboard audit hook failed");
    }
  }

  async function act(request: Request, url: URL, name: string, role: DashboardRole, headers: Record<string, string>): Promise<Response> {
    if (!(ACTIONS as readonly string[]).includes(name)) return textResponse(404, "no such action", headers);
    const refuse = async (status: number, why: string, target: AuditEntry["target"] = {}) => {
      await audit({ action: name, role, target, outcome: "refused", detail: why, request });
      return textResponse(status, why, headers);
    };
    if (role !== "admin") return refuse(403, "read-only users cannot act");
    if (!sameOrigin(request)) return refuse(403, "cross-site request refused");
    if (Number(request.headers.get("content-length") ?? 0) > MAX_FORM_BYTES) return refuse(413, "form too large");
    let form: FormData;
    try {
      form = await request.formData();
    } catch {
      return refuse(400, "expected a form (application/x-www-form-urlencoded)");
    }
    const target: AuditEntry["target"] = {};
    for (const key of new Set(form.keys()))
      if (key !== "_csrf" && key !== "back")
        target[key] = form.getAll(key).length > 1 ? form.getAll(key).map(String) : String(form.get(key));
    if (!csrf.verify(form.get("_csrf"))) return refuse(403, "missing or invalid CSRF token: reload the page and try again", target);
    const back = backTo(form.get("back"), url);
    try {
      const result = await runAction(store, base, name as ActionName, form);
      live.nudge();
      await audit({ action: name, role, target, outcome: "done", detail: result.notice, request });
      return redirect(result.location ? new URL(result.location, url.origin) : back, "notice", result.notice);
    } catch (error) {
      if (!(error instanceof PgbusError)) throw error;
      await audit({ action: name, role, target, outcome: "failed", detail: error.message, request });
      return redirect(back, "error", error.message);
    }
  }

  /** Where a form sends the user back to: a page of this dashboard, nothing else. */
  function backTo(value: ReturnType<FormData["get"]>, url: URL): URL {
    const fallback = new URL(`${base}/`, url.origin);
    if (typeof value !== "string" || !value.startsWith("/") || value.startsWith("//")) return fallback;
    const target = new URL(value, url.origin);
    return target.origin === url.origin && (target.pathname === base || target.pathname.startsWith(`${base}/`)) ? target : fallback;
  }

  function redirect(to: URL, key: "notice" | "error", text: string): Response {
    to.searchParams.delete("notice");
    to.searchParams.delete("error");
    to.searchParams.set(key, text);
    return new Response(null, { status: 303, headers: { location: `${to.pathname}${to.search}`, "cache-control": "no-store" } });
  }

  async function handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const nonce = newNonce();
    const headers = securityHeaders(nonce);
    if (url.pathname !== base && !url.pathname.startsWith(`${base}/`)) return textResponse(404, "not found", headers);
    const path = url.pathname.slice(base.length);
    const role = await options.authorize(request);
    if (role === false) return textResponse(401, "not authorized", headers);
    if (role !== "admin" && role !== "read_only")
      throw new ValidationError("INVALID_OPTION", `authorize returned ${String(role)}: "admin", "read_only" or false`);
    const probe = probes.answer(path, request, headers);
    if (probe) return probe;
    if (request.method === "POST") {
      const action = /^\/actions\/([a-z-]+)$/.exec(path);
      return action ? act(request, url, action[1]!, role, headers) : textResponse(404, "not found", headers);
    }
    if (request.method !== "GET" && request.method !== "HEAD")
      return textResponse(405, "method not allowed", { ...headers, allow: "GET, HEAD, POST" });
    if (path === "/live") return live.open(request, headers);
    const ctx: PageContext = { base, role, csrf: csrf.issue(), nonce, url };
    try {
      const rendered = await renderPage(deps, ctx, path);
      if (!rendered) return textResponse(404, "not found", headers);
      return new Response(rendered.page.toString(), {
        status: rendered.status,
        headers: { ...headers, "content-type": "text/html; charset=utf-8" },
      });
    } catch (error) {
      if (error instanceof ValidationError) return textResponse(400, error.message, headers);
      if (error instanceof PgbusError && error.code === "QUEUE_NOT_FOUND") return textResponse(404, error.message, headers);
      throw error;
    }
  }

  async function fetchHandler(request: Request): Promise<Response> {
    try {
      const response = await handle(request);
      if (request.method !== "HEAD" || !response.body) return response;
      await response.body.cancel();
      return new Response(null, { status: response.status, headers: response.headers });
    } catch (error) {
      logger.error({ err: (error as Error).message, url: request.url }, "dashboard request failed");
      return textResponse(500, `internal error: ${(error as Error).message}`, securityHeaders(newNonce()));
    }
  }

  return {
    basePath: base,
    fetch: fetchHandler,
    node: toNodeHandler(fetchHandler),
    async close() {
      await live.close();
      await probes.close();
      await database.close();
    },
  };
}
