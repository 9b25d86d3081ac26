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
  | "JOB_ABORTED"
  | "UNIQUE_KEY_CONTENDED"
  | "NO_SUBSCRIBERS"
  | "BATCH_SEALED"
  | "INVALID_CIRCUIT_BREAKER";

export class PgbusError extends Error {
  readonly code: PgbusErrorCode;

  constructor(code: PgbusErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** One problem a job's schema found in a payload: where (`user.email`, "" for the payload itself) and what. */
export interface PayloadIssue {
  path: string;
  message: string;
}

/**
 * Bad input from the caller: a name, payload, option or config value that breaks a rule.
 * A payload refused by its job's schema carries the schema's issues, each with its path.
 */
export class ValidationError extends PgbusError {
  readonly issues: readonly PayloadIssue[] | undefined;

  constructor(code: PgbusErrorCode, message: string, options?: { cause?: unknown; issues?: readonly PayloadIssue[] }) {
    super(code, message, options);
    this.issues = options?.issues;
  }
}

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
    return storableErrorRecord({ name: thrown.name, message: thrown.message, ...(thrown.stack ? { stack: thrown.stack } : {}) });
  }
  if (thrown === undefined) return { name: "NonError", message: "handler threw undefined" };
  if (thrown === null) return { name: "NonError", message: "handler threw null" };
  if (typeof thrown === "string") return storableErrorRecord({ name: "NonError", message: thrown });
  let text: string;
  try {
    text = JSON.stringify(thrown) ?? String(thrown);
  } catch {
    text = String(thrown);
  }
  return storableErrorRecord({ name: "NonError", message: text });
}

/** Longest error message or stack kept in an error record; the rest is cut off with a note. */
export const MAX_ERROR_TEXT_CHARS = 16_384;

/** NUL, and surrogate halves that are not part of a pair: what PostgreSQL's text and jsonb refuse. */
// eslint-disable-next-line no-control-regex -- NUL is exactly what this looks for
const UNSTORABLE_CHARS = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * The text with every character PostgreSQL cannot store (NUL, a lone surrogate such as
 * half an emoji cut by `slice`) replaced by U+FFFD, so a statement carrying it cannot fail
 * on its content. Well-formed text comes back as it was.
 */
export function storableText(text: string): string {
  return text.replace(UNSTORABLE_CHARS, "\ufffd");
}

function storableField(value: unknown, fallback: string): string {
  let text: string;
  try {
    text = typeof value === "string" ? value : value === undefined || value === null ? fallback : String(value);
  } catch {
    text = fallback;
  }
  if (text.length > MAX_ERROR_TEXT_CHARS) {
    // The note counts towards the limit, so a record made storable twice is cut once.
    const note = `... (cut, ${text.length} characters in all)`;
    text = `${text.slice(0, MAX_ERROR_TEXT_CHARS - note.length)}${note}`;
  }
  return storableText(text);
}

/**
 * An error record PostgreSQL can always store: `name` and `message` are strings, every
 * string (the fields a caller added, such as `reason`, included) is free of NUL and lone
 * surrogates (replaced by U+FFFD), and message and stack are at most MAX_ERROR_TEXT_CHARS
 * long. Whatever a handler threw, the retry and the move to the DLQ that carry its record
 * cannot fail on it (a failure that could not be stored would re-run the job every VT).
 */
export function storableErrorRecord<T extends ErrorRecord>(record: T): T {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record)) {
    if (value === undefined || key === "name" || key === "message" || key === "stack") continue;
    out[storableText(key)] = typeof value === "number" || typeof value === "boolean" || value === null ? value : storableField(value, "");
  }
  out["name"] = storableField(record.name, "Error") || "Error";
  out["message"] = storableField(record.message, "");
  if (record.stack !== undefined && record.stack !== null) out["stack"] = storableField(record.stack, "");
  return out as T;
}
