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

/**
 * The statement was refused for a value it carried: a data exception (class 22, e.g. text
 * jsonb cannot hold) or a program limit (class 54, e.g. a value too large).
 */
export function isDataError(error: unknown): boolean {
  const state = sqlState(error);
  return state !== undefined && (state.startsWith("22") || state.startsWith("54"));
}
