import { type ErrorRecord, PgbusError, ValidationError, storableErrorRecord } from "../errors.ts";

/** Default cap on one message's JSON, in bytes. PostgreSQL's own jsonb limit is far higher. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024;

/**
 * In JSON.stringify's output, an escape jsonb refuses: `\u0000` (NUL) or a surrogate
 * escape (JSON.stringify writes a surrogate as an escape only when it is unpaired). An
 * escape counts only when its backslash is not itself escaped: the text `\\u0000` is a
 * backslash followed by "u0000", which jsonb stores fine.
 */
const UNSTORABLE_ESCAPE = /(?<!\\)((?:\\\\)*)\\u(?:0000|d[89a-f][0-9a-f]{2})/gi;

/**
 * Turns a message into the JSON text sent to PostgreSQL, or throws a ValidationError that
 * says what is wrong: values JSON cannot carry (BigInt, circular structures, undefined),
 * the NUL character and lone surrogates (jsonb refuses both), naming where they are, and
 * messages over the size limit.
 */
export function serializeJson(value: unknown, what: string, maxBytes: number = DEFAULT_MAX_PAYLOAD_BYTES): string {
  checkPayloadValue(value, what);
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new ValidationError("INVALID_PAYLOAD", `${what} is not JSON-serialisable: ${reason}`, { cause });
  }
  if (text === undefined) {
    throw new ValidationError(
      "INVALID_PAYLOAD",
      `${what} is not JSON-serialisable: got ${typeof value}; use an object, array, string, number, boolean or null`,
    );
  }
  // JSON.stringify writes `\u` only for control characters and lone surrogates (or after an
  // escaped backslash): the plain search keeps the regular expression off the common path.
  if (text.includes("\\u")) {
    UNSTORABLE_ESCAPE.lastIndex = 0;
    if (UNSTORABLE_ESCAPE.test(text)) throw unstorableTextError(text, what);
  }
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > maxBytes) {
    throw new PgbusError("PAYLOAD_TOO_LARGE", `${what} is ${bytes} bytes of JSON, over the ${maxBytes}-byte limit (maxPayloadBytes)`);
  }
  return text;
}

/**
 * Refuses, before it is wrapped in an envelope or an event (where JSON.stringify would
 * silently leave it out), a payload JSON cannot carry at all: undefined, a function, a
 * symbol, or a number that is not finite (JSON.stringify would write null).
 */
export function checkPayloadValue(value: unknown, what: string): void {
  const kind = typeof value;
  if (value === undefined || kind === "function" || kind === "symbol" || (kind === "number" && !Number.isFinite(value))) {
    const shown = kind === "number" ? String(value) : kind === "undefined" ? "undefined" : `a ${kind}`;
    throw new ValidationError(
      "INVALID_PAYLOAD",
      `${what} is not JSON-serialisable: got ${shown}, which JSON cannot carry; use an object, array, string, finite number, boolean or null`,
    );
  }
}

/**
 * The JSON text of an error record, safe for any statement: its strings are made storable
 * first (NUL and lone surrogates become U+FFFD, see storableErrorRecord), and the text is
 * checked once more so that it can never hold an escape jsonb refuses.
 */
export function errorRecordJson(record: ErrorRecord): string {
  return storableJson(storableErrorRecord(record));
}

/** JSON.stringify, with any escape jsonb would refuse replaced by `\ufffd`. */
export function storableJson(value: unknown): string {
  const text = JSON.stringify(value) ?? "null";
  return text.replace(UNSTORABLE_ESCAPE, (_match, backslashes: string) => `${backslashes}\\ufffd`);
}

/** A short description of a bad value for an error message: its type, and the value when it is short. */
export function describeValue(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === "string") return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return `${typeof value} ${String(value)}`;
  if (Array.isArray(value)) return `an array of ${value.length}`;
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

function unstorableTextError(text: string, what: string): ValidationError {
  const found = findUnstorable(JSON.parse(text) as unknown, "");
  const where = found ? ` at ${found.path || "the top level"}` : "";
  if (found?.kind === "surrogate") {
    return new ValidationError(
      "INVALID_PAYLOAD",
      `${what} has a lone surrogate (${found.detail})${where}, as left by slicing a string through an emoji or ` +
        `another character outside the BMP; PostgreSQL's jsonb takes only well-formed Unicode: fix the string ` +
        `(e.g. with String.prototype.toWellFormed(), which puts U+FFFD in its place)`,
    );
  }
  return new ValidationError(
    "INVALID_PAYLOAD",
    `${what} contains the NUL character (U+0000)${where}, which PostgreSQL's jsonb cannot store; remove it or ` +
      `replace it (e.g. with U+FFFD). A backslash followed by "u0000" is fine`,
  );
}

interface Unstorable {
  path: string;
  kind: "nul" | "surrogate";
  detail: string;
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Where in a (parsed) JSON value the first string or key jsonb refuses is, as `$.a[2].b`. */
function findUnstorable(value: unknown, path: string): Unstorable | null {
  if (typeof value === "string") return unstorableIn(value, path || "$");
  if (Array.isArray(value)) {
    for (const [index, item] of value.entries()) {
      const found = findUnstorable(item, `${path || "$"}[${index}]`);
      if (found) return found;
    }
    return null;
  }
  if (value && typeof value === "object") {
    for (const [key, item] of Object.entries(value)) {
      const inKey = unstorableIn(key, `a key in ${path || "$"}`);
      if (inKey) return inKey;
      const found = findUnstorable(item, `${path || "$"}${/^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`}`);
      if (found) return found;
    }
  }
  return null;
}

function unstorableIn(text: string, path: string): Unstorable | null {
  if (text.includes("\u0000")) return { path, kind: "nul", detail: "U+0000" };
  const lone = LONE_SURROGATE.exec(text);
  if (lone) return { path, kind: "surrogate", detail: `U+${lone[0].charCodeAt(0).toString(16).toUpperCase()}` };
  return null;
}
