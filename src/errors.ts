/**
 * Every error pgbus throws on purpose is a PgbusError with a stable `code`, so callers
 * can branch on `err.code` instead of parsing messages. Messages name the bad value and
 * what would have been valid.
 */
export type PgbusErrorCode =
  | "INVALID_QUEUE_NAME"
  | "INVALID_JOB_NAME"
  | "INVALID_ROUTING_KEY"
  | "INVALID_PAYLOAD"
  | "PAYLOAD_TOO_LARGE"
  | "INVALID_OPTION"
  | "INVALID_EXECUTION_MODE"
  | "INVALID_CONFIG"
  | "INVALID_QUEUE_DSL"
  | "UNKNOWN_JOB"
  | "DUPLICATE_JOB"
  | "POOL_FULL"
  | "POOL_CLOSED"
  | "JOBS_MODULE_LOAD_FAILED"
  | "QUEUE_NOT_FOUND"
  | "MIGRATION_FAILED"
  | "JOB_ABORTED";

export class PgbusError extends Error {
  readonly code: PgbusErrorCode;

  constructor(code: PgbusErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Bad input from the caller: a name, payload, option or config value that breaks a rule. */
export class ValidationError extends PgbusError {}

/** `post` was called on an execution pool that has no free slot. */
export class PoolFullError extends PgbusError {
  constructor(capacity: number) {
    super("POOL_FULL", `execution pool is full (capacity ${capacity}); read at most availableCapacity() messages`);
  }
}

/** `post` was called after `shutdown()` or `kill()`. */
export class PoolClosedError extends PgbusError {
  constructor() {
    super("POOL_CLOSED", "execution pool is shut down and accepts no more tasks");
  }
}

/** Describes any thrown value (Error, string, undefined, ...) as a plain, serialisable record. */
export interface ErrorRecord {
  name: string;
  message: string;
  stack?: string;
}

export function toErrorRecord(thrown: unknown): ErrorRecord {
  if (thrown instanceof Error) {
    return { name: thrown.name, message: thrown.message, ...(thrown.stack ? { stack: thrown.stack } : {}) };
  }
  if (thrown === undefined) return { name: "NonError", message: "handler threw undefined" };
  if (thrown === null) return { name: "NonError", message: "handler threw null" };
  if (typeof thrown === "string") return { name: "NonError", message: thrown };
  let text: string;
  try {
    text = JSON.stringify(thrown) ?? String(thrown);
  } catch {
    text = String(thrown);
  }
  return { name: "NonError", message: text };
}
