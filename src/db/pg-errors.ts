/**
 * PostgreSQL error codes pgbus reacts to, in one table, so "what does this failure mean"
 * is decided in one place (https://www.postgresql.org/docs/current/errcodes-appendix.html).
 */
const UNDEFINED_TABLE = "42P01";

function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** The queue's table is gone (the queue was dropped while a worker served it). */
export function isUndefinedTable(error: unknown): boolean {
  return sqlState(error) === UNDEFINED_TABLE;
}
