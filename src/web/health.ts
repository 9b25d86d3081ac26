import type { IncomingMessage, ServerResponse } from "node:http";
import { ValidationError, toErrorRecord } from "../errors.ts";
import type { ChildHealth } from "../process/messages.ts";
import { listProcesses, ping } from "../process/process-store.ts";
import { type WebDatabaseOptions, openWebDatabase } from "./database.ts";
import { type WebReply, isRead, methodNotAllowed, pathOf, sendReply, toResponse } from "./http.ts";

export interface HealthHandlerOptions extends WebDatabaseOptions {
  /**
   * The supervisor's own children (`pgbus start` passes them): /readyz then needs every one
   * ready and beating. Without it (the dashboard, an app's server), /readyz looks at every
   * process's heartbeat row in pgbus.processes instead.
   */
  children?: () => ChildHealth[];
  /** A process or child whose last heartbeat is older than this is stale. Default 30000 (the config's staleProcessAfterMs). */
  staleAfterMs?: number;
}

export interface HealthCheck {
  name: string;
  ok: boolean;
  detail: string;
}

/** /livez and /readyz; see docs/observability.md. */
export interface HealthHandler {
  /** 200 while the process can answer at all. */
  livez(): WebReply;
  /** 200 when the database answers and every child (or process) is alive and beating; 503 otherwise, saying why. */
  readyz(): Promise<WebReply>;
  /** A Web fetch handler: a path ending in /livez or /readyz; anything else is 404. */
  fetch(request: Request): Promise<Response>;
  /** A Node (req, res) handler with the same routes. */
  node(req: IncomingMessage, res: ServerResponse): Promise<void>;
  close(): Promise<void>;
}

const JSON_TYPE = "application/json; charset=utf-8";

function reply(ok: boolean, checks: HealthCheck[]): WebReply {
  return { status: ok ? 200 : 503, contentType: JSON_TYPE, body: `${JSON.stringify({ status: ok ? "ok" : "fail", checks })}\n` };
}

function childCheck(child: ChildHealth, staleAfterMs: number): HealthCheck {
  const name = `child ${child.role}`;
  if (!child.ready) return { name, ok: false, detail: "not running (starting, or being re-forked after an exit)" };
  if (child.beatAgeMs === null || child.beatAgeMs > staleAfterMs) {
    return {
      name,
      ok: false,
      detail: `no heartbeat for ${child.beatAgeMs === null ? "ever" : `${child.beatAgeMs} ms`} (stale after ${staleAfterMs} ms)`,
    };
  }
  return { name, ok: true, detail: `last heartbeat ${child.beatAgeMs} ms ago` };
}

export function createHealthHandler(options: HealthHandlerOptions): HealthHandler {
  const staleAfterMs = options.staleAfterMs ?? 30_000;
  if (!Number.isInteger(staleAfterMs) || staleAfterMs <= 0) {
    throw new ValidationError(
      "INVALID_OPTION",
      `health staleAfterMs must be a positive integer of milliseconds, got ${String(options.staleAfterMs)}`,
    );
  }
  const database = openWebDatabase(options, "createHealthHandler");

  const processChecks = async (): Promise<HealthCheck[]> => {
    if (options.children) return options.children().map((child) => childCheck(child, staleAfterMs));
    const stale = (await listProcesses(database.pool)).filter((process) => process.beatAgeSec * 1000 > staleAfterMs);
    const names = stale.map((process) => `${process.role} pid ${process.pid} on ${process.host} (${Math.round(process.beatAgeSec)} s)`);
    return [
      { name: "processes", ok: stale.length === 0, detail: stale.length === 0 ? "every process is beating" : `stale: ${names.join(", ")}` },
    ];
  };

  const readyz = async (): Promise<WebReply> => {
    const checks: HealthCheck[] = [];
    try {
      await ping(database.pool);
      checks.push({ name: "database", ok: true, detail: "answers" });
      checks.push(...(await processChecks()));
    } catch (error) {
      checks.push({ name: "database", ok: false, detail: toErrorRecord(error).message });
    }
    return reply(
      checks.every((check) => check.ok),
      checks,
    );
  };
  const livez = (): WebReply => reply(true, []);
  const route = async (method: string | undefined, path: string): Promise<WebReply> => {
    if (!isRead(method)) return methodNotAllowed;
    if (path.endsWith("/livez")) return livez();
    if (path.endsWith("/readyz")) return readyz();
    return { status: 404, contentType: "text/plain; charset=utf-8", body: "not found: /livez or /readyz\n" };
  };
  return {
    livez,
    readyz,
    fetch: async (request) => toResponse(await route(request.method, new URL(request.url).pathname), request.method),
    node: async (req, res) => sendReply(res, await route(req.method, pathOf(req)), req.method),
    close: () => database.close(),
  };
}
