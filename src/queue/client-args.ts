import { ValidationError } from "../errors.ts";
import type { Headers, MessageId } from "./client.ts";
import { serializeJson } from "./payload.ts";

/**
 * The argument checks and conversions of the queue client: ids, delays, headers, FIFO
 * groups and partition options, each refused with a ValidationError naming the value.
 */

/** PGMQ's FIFO group header: messages with the same value are read in order by pgmq.read_grouped*. */
export const FIFO_GROUP_HEADER = "x-pgmq-group";

export function toId(id: MessageId): string {
  const text = String(id);
  if (!/^[1-9][0-9]{0,18}$/.test(text)) {
    throw new ValidationError("INVALID_OPTION", `invalid message id ${JSON.stringify(text)}: ids are positive integers`);
  }
  return text;
}

/** Longest delay a send takes: 100 years, far inside PostgreSQL's timestamp range. */
export const MAX_SEND_DELAY_MS = 100 * 365.25 * 24 * 3_600_000;
/** The runAt range a send takes: years 1 to 9999 (PostgreSQL refuses some earlier years outright). */
export const RUN_AT_RANGE = Object.freeze({ min: new Date("0001-01-01T00:00:00.000Z"), max: new Date("9999-12-31T23:59:59.999Z") });

export function visibility(options: { delayMs?: number; runAt?: Date }): [number, Date | null] {
  const delayMs = options.delayMs ?? 0;
  if (typeof delayMs !== "number" || !Number.isFinite(delayMs) || delayMs < 0 || delayMs > MAX_SEND_DELAY_MS) {
    throw new ValidationError(
      "INVALID_OPTION",
      `delayMs must be a number of milliseconds from 0 to ${MAX_SEND_DELAY_MS} (100 years), got ${String(delayMs)}`,
    );
  }
  const runAt = options.runAt;
  if (runAt !== undefined && runAt !== null) {
    const time = runAt instanceof Date ? runAt.getTime() : Number.NaN;
    if (!Number.isFinite(time) || time < RUN_AT_RANGE.min.getTime() || time > RUN_AT_RANGE.max.getTime()) {
      const shown = runAt instanceof Date && Number.isFinite(time) ? runAt.toISOString() : String(runAt);
      throw new ValidationError(
        "INVALID_OPTION",
        `runAt must be a valid Date from ${RUN_AT_RANGE.min.toISOString()} to ${RUN_AT_RANGE.max.toISOString()}, got ${shown}`,
      );
    }
  }
  return [delayMs, runAt ?? null];
}

/** The headers with the FIFO group header set, when a group key is given. */
export function withGroup(headers: Headers | undefined, groupKey: string | undefined): Headers | undefined {
  if (groupKey === undefined) return headers;
  if (typeof groupKey !== "string" || groupKey.length === 0 || groupKey.length > 255) {
    throw new ValidationError("INVALID_OPTION", `groupKey must be a string of 1-255 characters, got ${JSON.stringify(groupKey)}`);
  }
  return { ...headers, [FIFO_GROUP_HEADER]: groupKey };
}

/** pg_partman's interval: digits (msg ids per partition) or a PostgreSQL time interval. */
const TIME_INTERVAL = /^\d+(\.\d+)?\s*(second|minute|hour|day|week|month|year)s?$/i;
/** `label` names each of the two values in errors: the option path by default, a CLI flag for the CLI. */
export function partitionOptions(
  options: { interval: number | string; retention: number | string },
  label: (name: "interval" | "retention") => string = (name) => `partitioned.${name}`,
): {
  interval: string;
  retention: string;
} {
  const kind = (name: "interval" | "retention", value: unknown): "ids" | "time" => {
    if (typeof value === "number" && Number.isSafeInteger(value) && value > 0) return "ids";
    if (typeof value === "string" && /^[1-9]\d*$/.test(value)) return "ids";
    if (typeof value === "string" && TIME_INTERVAL.test(value.trim())) return "time";
    throw new ValidationError(
      "INVALID_OPTION",
      `${label(name)} must be a positive integer (msg ids) or a time interval such as "1 day", got ${JSON.stringify(value)}`,
    );
  };
  if (typeof options !== "object" || options === null) {
    throw new ValidationError("INVALID_OPTION", "partitioned must be { interval, retention }");
  }
  if (kind("interval", options.interval) !== kind("retention", options.retention)) {
    throw new ValidationError(
      "INVALID_OPTION",
      `${label("interval")} and ${label("retention")} must be of one kind: both msg id counts or both time intervals, got ${JSON.stringify(options.interval)} and ${JSON.stringify(options.retention)}`,
    );
  }
  return { interval: String(options.interval).trim(), retention: String(options.retention).trim() };
}

export function batchHeaders(headers: Headers | Headers[] | undefined, count: number, queue: string, groupKey?: string): string | null {
  if (groupKey !== undefined) {
    headers = Array.isArray(headers) ? headers.map((one) => withGroup(one, groupKey)!) : withGroup(headers, groupKey);
  }
  if (headers === undefined) return null;
  if (Array.isArray(headers)) {
    if (headers.length !== count) {
      throw new ValidationError(
        "INVALID_OPTION",
        `headers has ${headers.length} entries for ${count} messages; give one per message or a single object`,
      );
    }
    return serializeJson(headers, `headers for queue ${queue}`);
  }
  const one = serializeJson(headers, `headers for queue ${queue}`);
  return `[${new Array<string>(count).fill(one).join(",")}]`;
}

export function requireNumber(name: string, value: number, min: number): void {
  if (typeof value !== "number" || !Number.isFinite(value) || value < min) {
    throw new ValidationError("INVALID_OPTION", `${name} must be a finite number >= ${min}, got ${String(value)}`);
  }
}

export function requireInteger(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) {
    throw new ValidationError("INVALID_OPTION", `${name} must be an integer >= ${min}, got ${String(value)}`);
  }
}
