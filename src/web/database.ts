import type pg from "pg";
import type { Pgbus } from "../bus.ts";
import { endPool } from "../db/close.ts";
import { createPool } from "../db/queryable.ts";
import { ValidationError } from "../errors.ts";

/** Where a web handler (dashboard, /metrics, health) reads from: a bus's pool, yours, or its own. */
export interface WebDatabaseOptions {
  /** Reuse this bus's pool. */
  bus?: Pgbus;
  /** Or this pool of yours (never closed by the handler). */
  pool?: pg.Pool;
  /** Or open a small pool of its own on this URL (closed by the handler's close()). */
  connectionString?: string;
}

export interface WebDatabase {
  readonly pool: pg.Pool;
  close(): Promise<void>;
}

/** The pool a handler opens for a connectionString. */
export interface OwnPoolSettings {
  max: number;
  /** Client-side bound on every statement, so a stuck database fails a request rather than piling them up. */
  queryTimeoutMs: number;
}

const OWN_POOL: OwnPoolSettings = { max: 2, queryTimeoutMs: 5_000 };

export function openWebDatabase(options: WebDatabaseOptions, what: string, own: OwnPoolSettings = OWN_POOL): WebDatabase {
  if (options.pool) return { pool: options.pool, close: async () => {} };
  if (options.bus) return { pool: options.bus.pool, close: async () => {} };
  if (typeof options.connectionString !== "string" || options.connectionString === "") {
    throw new ValidationError("INVALID_OPTION", `${what} needs bus (a Pgbus), pool (a pg.Pool) or connectionString (a PostgreSQL URL)`);
  }
  const pool = createPool(
    { connectionString: options.connectionString },
    { max: own.max, applicationName: "pgbus:web", queryTimeoutMs: own.queryTimeoutMs },
  );
  return { pool, close: () => endPool(pool) };
}
