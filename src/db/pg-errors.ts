/**
 * PostgreSQL error codes pgbus reacts to, in one table, so "what does this failure mean"
 * is decided in one place (https://www.postgresql.org/docs/current/errcodes-appendix.html).
 */
import type { Queryable } from "./queryable.ts";

const UNDEFINED_TABLE = "42P01";

function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** The queue's table is gone (the queue was dropped while a worker served it). */
export function isUndefinedTable(error: unknown): boolean {
  return sqlState(error) === UNDEFINED_TABLE;
}

const QUEUE_TABLE_MISSING = /relation "pgmq\.[qa]_([a-z0-9_]+)" does not exist/;

/**
 * The queue whose table an undefined-table error names (`relation "pgmq.q_<queue>" does not
 * exist`): a queue dropped while in use, or never made. Undefined for any other error, and
 * for a server whose messages are translated (lc_messages), which then keeps its SQLSTATE.
 */
export function missingQueueOf(error: unknown): string | undefined {
  if (!isUndefinedTable(error) || !(error instanceof Error)) return undefined;
  return QUEUE_TABLE_MISSING.exec(error.message)?.[1];
}

/**
 * The statement was refused for a value it carried: a data exception (class 22, e.g. text
 * jsonb cannot hold) or a program limit (class 54, e.g. a value too large).
 */
export function isDataError(error: unknown): boolean {
  const state = sqlState(error);
  return state !== undefined && (state.startsWith("22") || state.startsWith("54"));
}

const INVALID_SCHEMA_NAME = "3F000";

/** What to do when pgbus's schema is not there: the words every "not migrated" error ends with. */
export const MIGRATE_HINT = "run `pgbus migrate` (or `bus.migrate()`)";

/**
 * Adds what to do to an error that means the database was never migrated: a missing
 * pgmq/pgbus schema or relation (`relation "pgmq.meta" does not exist`). The error keeps its
 * class and SQLSTATE `code`, so callers that branch on them are unaffected; only its message
 * (and the first line of its stack) gains the hint. Returns the error it was given.
 */
export function withMigrateHint(error: unknown): unknown {
  const state = sqlState(error);
  if ((state !== UNDEFINED_TABLE && state !== INVALID_SCHEMA_NAME) || !(error instanceof Error)) return error;
  const original = error.message;
  if (original.includes("pgbus migrate")) return error;
  const queueTable = QUEUE_TABLE_MISSING.exec(original);
  let hint: string;
  if (queueTable) {
    hint = `(queue ${queueTable[1]} does not exist: create it with createQueue(); if the database was never migrated, ${MIGRATE_HINT} first)`;
  } else if (/(relation|schema) "(pgmq|pgbus)[."]/.test(original)) {
    hint = `(the pgbus schema is missing: ${MIGRATE_HINT} first)`;
  } else {
    return error;
  }
  error.message = `${original} ${hint}`;
  if (error.stack?.includes(original)) error.stack = error.stack.replace(original, error.message);
  return error;
}

/**
 * The same handle, with withMigrateHint applied to every failed query. Arguments pass through
 * as they are (pg's `query({ name, text, values })` of prepared statements included).
 */
export function withMigrateHints(db: Queryable): Queryable {
  const query = db.query.bind(db) as (...args: unknown[]) => ReturnType<Queryable["query"]>;
  return {
    query: (...args: unknown[]) =>
      query(...args).catch((error: unknown) => {
        throw withMigrateHint(error);
      }),
  } as Queryable;
}
