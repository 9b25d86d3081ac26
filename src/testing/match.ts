import { isDeepStrictEqual } from "node:util";

/**
 * What the `expect*` helpers accept to pick records by payload:
 * - undefined: any payload;
 * - a function: a predicate on the payload;
 * - an object or array: a partial match, recursively (every key given must match; keys
 *   not given are ignored; arrays match element by element and must have the same length);
 * - an asymmetric matcher of vitest or jest (`expect.objectContaining(...)`,
 *   `expect.any(String)`), anywhere in the above;
 * - anything else: equal to the payload (Object.is, or deep equality for dates).
 */
export type PayloadMatcher<P = unknown> = ((payload: P) => boolean) | DeepPartial<P> | undefined;

type DeepPartial<T> = T extends object
  ? { [K in keyof T]?: DeepPartial<T[K]> | AsymmetricMatcher } | AsymmetricMatcher
  : T | AsymmetricMatcher;

interface AsymmetricMatcher {
  asymmetricMatch(other: unknown): boolean;
}

function isAsymmetric(value: unknown): value is AsymmetricMatcher {
  return typeof value === "object" && value !== null && typeof (value as AsymmetricMatcher).asymmetricMatch === "function";
}

export function matches(expected: unknown, actual: unknown): boolean {
  if (expected === undefined) return true;
  if (typeof expected === "function") return Boolean((expected as (value: unknown) => unknown)(actual));
  return partialMatch(expected, actual);
}

function partialMatch(expected: unknown, actual: unknown): boolean {
  if (isAsymmetric(expected)) return expected.asymmetricMatch(actual);
  if (Array.isArray(expected)) {
    return Array.isArray(actual) && actual.length === expected.length && expected.every((item, i) => partialMatch(item, actual[i]));
  }
  if (expected instanceof Date || expected instanceof RegExp) return isDeepStrictEqual(expected, actual);
  if (typeof expected === "object" && expected !== null) {
    if (typeof actual !== "object" || actual === null) return false;
    return Object.entries(expected).every(([key, value]) => partialMatch(value, (actual as Record<string, unknown>)[key]));
  }
  return Object.is(expected, actual);
}

/** A short rendering of a value for assertion messages. */
export function show(value: unknown): string {
  if (typeof value === "function") return "(a predicate)";
  try {
    const text = JSON.stringify(value);
    return text === undefined ? String(value) : text.length > 200 ? `${text.slice(0, 200)}...` : text;
  } catch {
    return String(value);
  }
}
