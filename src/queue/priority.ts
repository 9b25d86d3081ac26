import { ValidationError } from "../errors.ts";
import type { Headers } from "./client.ts";
import { describeValue } from "./payload.ts";

/**
 * Job priorities: an integer 0-9, 0 runs first, kept in this message header. The queue's
 * claim index (migration pgbus/0010) reads it through pgbus.message_priority, which treats
 * a missing or unknown value as DEFAULT_PRIORITY, so messages from any PGMQ client take
 * part, and the default costs no header at all.
 */
export const PRIORITY_HEADER = "pgbus_priority";
export const DEFAULT_PRIORITY = 5;
export const PRIORITY_RANGE = Object.freeze({ min: 0, max: 9 });

/** The priority as given, or a ValidationError naming the value and the range. */
export function validatePriority(value: unknown, what = "priority"): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < PRIORITY_RANGE.min || value > PRIORITY_RANGE.max) {
    throw new ValidationError(
      "INVALID_OPTION",
      `${what} must be an integer from ${PRIORITY_RANGE.min} to ${PRIORITY_RANGE.max} (0 runs first), got ${describeValue(value)}`,
    );
  }
  return value;
}

/** The headers with the priority header set; unchanged for the default (no header means 5). */
export function withPriority(headers: Headers | undefined, priority: number): Headers | undefined {
  if (priority === DEFAULT_PRIORITY) return headers;
  return { ...headers, [PRIORITY_HEADER]: priority };
}

/** A message's priority as the claim index sees it (pgbus.message_priority, in JavaScript). */
export function priorityOf(headers: Headers | null | undefined): number {
  const value = headers?.[PRIORITY_HEADER];
  const text = typeof value === "number" || typeof value === "string" ? String(value) : "";
  return /^[0-9]$/.test(text) ? Number(text) : DEFAULT_PRIORITY;
}
