import { ValidationError } from "../errors.ts";

/** Upper bound of a pool's capacity; more concurrency than this belongs in more workers. */
export const MAX_CAPACITY = 1000;

export function validateCapacity(value: unknown): number {
  if (!isIntegerFrom(1, value) || value > MAX_CAPACITY) {
    throw new ValidationError("INVALID_OPTION", `invalid pool capacity ${show(value)}: use an integer from 1 to ${MAX_CAPACITY}`);
  }
  return value;
}

export function validateThreads(value: unknown): number {
  if (!isIntegerFrom(1, value)) {
    throw new ValidationError("INVALID_OPTION", `invalid threads ${show(value)}: use an integer >= 1`);
  }
  return value;
}

export function validateBlockedLoopThreshold(value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new ValidationError("INVALID_OPTION", `invalid blockedLoopThresholdMs ${show(value)}: use a number of milliseconds > 0`);
  }
  return value;
}

/** A value as it should read in an error message: strings quoted, NaN and undefined spelled out. */
export function show(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

function isIntegerFrom(min: number, value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= min;
}
