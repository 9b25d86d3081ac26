import { PgbusError, ValidationError } from "../errors.ts";

/** Default cap on one message's JSON, in bytes. PostgreSQL's own jsonb limit is far higher. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024;

/**
 * Turns a message into the JSON text sent to PostgreSQL, or throws a ValidationError that
 * says what is wrong: values JSON cannot carry (BigInt, circular structures, undefined),
 * the NUL character (jsonb refuses it) and messages over the size limit.
 */
export function serializeJson(value: unknown, what: string, maxBytes: number = DEFAULT_MAX_PAYLOAD_BYTES): string {
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
  if (text.includes("\\u0000")) {
    throw new ValidationError("INVALID_PAYLOAD", `${what} contains the NUL character (\\u0000), which PostgreSQL's jsonb cannot store`);
  }
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > maxBytes) {
    throw new PgbusError("PAYLOAD_TOO_LARGE", `${what} is ${bytes} bytes of JSON, over the ${maxBytes}-byte limit (maxPayloadBytes)`);
  }
  return text;
}
