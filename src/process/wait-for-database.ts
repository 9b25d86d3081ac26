import { setTimeout as sleep } from "node:timers/promises";
import type pg from "pg";
import { PgbusError, toErrorRecord } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { type MigrationResult, migrate } from "../schema/migrator.ts";
import { ping } from "./process-store.ts";

export interface WaitForDatabaseOptions {
  pool: pg.Pool;
  databaseUrl: string;
  logger: Logger;
  /** Stop waiting (resolve null) once aborted, e.g. when a stop was requested. */
  signal: AbortSignal;
  minDelayMs?: number;
  maxDelayMs?: number;
  /** While still waiting, say so again this often (with the address), so a long wait is visible in the log. Default 30,000 ms. */
  repeatEveryMs?: number;
}

/** `host:port/database` of a URL, never its credentials. */
export function describeDatabase(databaseUrl: string): string {
  try {
    const url = new URL(databaseUrl);
    const host = url.hostname || url.searchParams.get("host") || "localhost";
    const database = decodeURIComponent(url.pathname.slice(1)) || decodeURIComponent(url.username) || "postgres";
    return `${host}:${url.port || "5432"}/${database}`;
  } catch {
    return "(unparseable database URL)";
  }
}

/**
 * What kind of wait a failure means: a server that cannot be reached (its wording varies
 * from one attempt to the next: ECONNREFUSED, ECONNRESET, "Connection terminated
 * unexpectedly") or one that answers with a SQLSTATE (database missing, starting up,
 * password refused). Only a change of kind is logged again.
 */
function waitKind(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? `sqlstate ${code}` : "unreachable";
}

/**
 * Waits until PostgreSQL answers, then migrates. A database that is not up yet (containers
 * starting together) is waited for with backoff rather than failed on: the wait is logged
 * when it starts, when the kind of failure changes (see waitKind) and every repeatEveryMs
 * while it lasts, so the log shows what is wrong without a line per attempt. A migration that fails on its own SQL is fatal
 * (waiting cannot fix it). Resolves null when aborted first.
 */
export async function waitForDatabaseAndMigrate(options: WaitForDatabaseOptions): Promise<MigrationResult | null> {
  const { pool, logger, signal } = options;
  const minDelay = options.minDelayMs ?? 250;
  const maxDelay = options.maxDelayMs ?? 5_000;
  const target = describeDatabase(options.databaseUrl);
  let delay = minDelay;
  const repeatEveryMs = options.repeatEveryMs ?? 30_000;
  let lastKind: string | null = null;
  let lastLoggedAt = 0;
  const startedAt = Date.now();
  while (!signal.aborted) {
    try {
      await ping(pool);
      const result = await migrate(pool);
      if (lastKind !== null) logger.info({ database: target }, `PostgreSQL at ${target} is reachable`);
      return result;
    } catch (error) {
      if (error instanceof PgbusError && error.code === "MIGRATION_FAILED") throw error;
      const reason = toErrorRecord(error).message || toErrorRecord(error).name;
      const kind = waitKind(error);
      if (kind !== lastKind || Date.now() - lastLoggedAt >= repeatEveryMs) {
        const waitedSec = Math.round((Date.now() - startedAt) / 1_000);
        const still = lastKind === null ? "" : ` (still, after ${waitedSec} s)`;
        lastKind = kind;
        lastLoggedAt = Date.now();
        logger.warn({ database: target, reason, waitedSec }, `waiting for PostgreSQL at ${target}${still} ... (${reason})`);
      }
    }
    await sleep(delay, undefined, { signal }).catch(() => {});
    delay = Math.min(maxDelay, delay * 2);
  }
  return null;
}
