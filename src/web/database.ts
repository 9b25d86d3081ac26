import type pg from "pg";
import type { Pgbus } from "../bus.ts";
import { endPool } from "../db/close.ts";
import { createPool } from "../db/queryable.ts";
import { ValidationError } from "../errors.ts";

/** Where a web handler (dashboard, /metrics, health) reads from: a bus's pool, or its own. */
export interface WebDatabaseOptions {
  /** Reuse this bus's pool. */
  bus?: Pgbus;
  /** Or open a small pool of its own on this URL (closed by the handler's close()). */
  connectionString?: string;
}

export interface WebDatabase {
  readonly pool: pg.Pool;
  close(): Promise<void>;
}

/** Every statement a web handler runs is bounded, so a stuck database fails a scrape rather than piling them up. */
const WEB_QUERY_TIMEOUT_MS = 5_000;

export function openWebDatabase(options: WebDatabaseOptions, what: string): WebDatabase {
  if (options.bus) return { pool: options.bus.pool, close: async () => {} };
  if (typeof options.connectionString !== "string" || options.connectionString === "") {
    throw new ValidationError("INVALID_OPTION", `${what} needs bus (a Pgbus) or connectionString (a PostgreSQL URL)`);
  }
  const pool = createPool(
    { connectionString: options.connectionString },
    { max: 2, applicationName: "pgbus:web", queryTimeoutMs: WEB_QUERY_TIMEOUT_MS },
  );
  return { pool, close: () => endPool(pool) };
}
