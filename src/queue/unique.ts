import { ValidationError, storableText } from "../errors.ts";

/**
 * Unique jobs: the enqueue option `uniqueKey` is stored in this message header, and a
 * partial unique index on the queue table (migration 0007, pgbus.enable_unique_keys)
 * allows one message per (job, key) in the queue at a time.
 */
export const UNIQUE_KEY_HEADER = "pgbus_unique_key";

/** Longest unique key, in characters. */
export const MAX_UNIQUE_KEY_LENGTH = 512;

/** A key as given, or a ValidationError naming it and the rule. */
export function validateUniqueKey(key: unknown, what: string): string {
  if (typeof key !== "string" || key.length === 0 || key.length > MAX_UNIQUE_KEY_LENGTH || storableText(key) !== key) {
    const shown = typeof key === "string" ? JSON.stringify(key.length > 60 ? `${key.slice(0, 60)}...` : key) : String(key);
    throw new ValidationError(
      "INVALID_OPTION",
      `${what} must be a string of 1 to ${MAX_UNIQUE_KEY_LENGTH} characters without NUL or lone surrogates, got ${shown}`,
    );
  }
  return key;
}
