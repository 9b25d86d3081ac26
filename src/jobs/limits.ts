import { ValidationError } from "../errors.ts";
import { type FailedOutcome, permanentFailure } from "./outcome.ts";

/** What a job does when its key is at its concurrency limit. */
export const ON_LIMIT = ["wait", "discard"] as const;
export type OnLimit = (typeof ON_LIMIT)[number];

/**
 * At most `limit` runs of the job at once (per key, when `key` is given), across every
 * worker process and host.
 */
export interface ConcurrencyOptions<P> {
  /** Splits the limit by payload, e.g. `(p) => p.tenantId`: a non-empty string. Default: one limit for the whole job. */
  key?: (payload: P) => string;
  /** Runs at once per key: an integer >= 1. `limit: 1` with a key runs each key's jobs one at a time. */
  limit: number;
  /**
   * "wait" (default): the message waits, parked, and starts in order as a slot frees.
   * "discard": the message is moved to the queue's archive with a `pgbus_discarded` header.
   */
  onLimit?: OnLimit;
}

/** At most `limit` starts of the job (per key, when `key` is given) in any `intervalMs`-long window, across every process. */
export interface RateLimitOptions<P = unknown> {
  /** Starts per interval: an integer >= 1. */
  limit: number;
  /** The window, in ms: an integer >= 1. */
  intervalMs: number;
  /** Splits the limit by payload: a non-empty string. Default: one limit for the whole job. */
  key?: (payload: P) => string;
}

export interface ConcurrencyLimit {
  readonly key: ((payload: unknown) => string) | undefined;
  readonly limit: number;
  readonly onLimit: OnLimit;
}

export interface RateLimit {
  readonly limit: number;
  readonly intervalMs: number;
  readonly key: ((payload: unknown) => string) | undefined;
}

function show(value: unknown): string {
  return typeof value === "function" ? "a function" : (JSON.stringify(value) ?? String(value));
}

function positiveInteger(owner: string, name: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw new ValidationError("INVALID_OPTION", `${owner}: ${name} must be an integer >= 1, got ${show(value)}`);
  }
  return value;
}

function keyFunction(owner: string, name: string, value: unknown): ((payload: unknown) => string) | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "function") {
    throw new ValidationError(
      "INVALID_OPTION",
      `${owner}: ${name} must be a function of the payload returning a string, got ${show(value)}`,
    );
  }
  return value as (payload: unknown) => string;
}

function plainObject(owner: string, value: unknown, shape: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ValidationError("INVALID_OPTION", `${owner} must be an object ${shape}, got ${show(value)}`);
  }
  return value as Record<string, unknown>;
}

/** Checks a job's `concurrency` option; `owner` names it in messages (e.g. "job send_email: concurrency"). */
export function resolveConcurrency(owner: string, options: unknown): ConcurrencyLimit | undefined {
  if (options === undefined) return undefined;
  const value = plainObject(owner, options, "{ limit, key?, onLimit? }");
  const onLimit = value["onLimit"] ?? "wait";
  if (!ON_LIMIT.includes(onLimit as OnLimit)) {
    throw new ValidationError("INVALID_OPTION", `${owner}: onLimit must be one of ${ON_LIMIT.join(", ")}, got ${show(onLimit)}`);
  }
  return Object.freeze({
    limit: positiveInteger(owner, "limit", value["limit"]),
    key: keyFunction(owner, "key", value["key"]),
    onLimit: onLimit as OnLimit,
  });
}

/** Checks a `rateLimit` option (a job's, or a queue's in the config file, which has no key). */
export function resolveRateLimit(owner: string, options: unknown): RateLimit | undefined {
  if (options === undefined) return undefined;
  const value = plainObject(owner, options, "{ limit, intervalMs, key? }");
  return Object.freeze({
    limit: positiveInteger(owner, "limit", value["limit"]),
    intervalMs: positiveInteger(owner, "intervalMs", value["intervalMs"]),
    key: keyFunction(owner, "key", value["key"]),
  });
}

/**
 * The full key of one limit for one payload: the job's name, then the key function's
 * result when there is one. A key function that throws or returns anything but a
 * non-empty string gives a failure the message is dead-lettered with ("invalid_limit_key"):
 * it would fail the same way on every retry.
 */
export function limitKey(
  job: string,
  which: "concurrency" | "rateLimit",
  key: ((payload: unknown) => string) | undefined,
  payload: unknown,
): string | FailedOutcome {
  if (!key) return job;
  let value: unknown;
  try {
    value = key(payload);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return invalidKey(`the ${which} key function of job ${job} threw: ${reason}`);
  }
  if (typeof value !== "string" || value.length === 0) {
    return invalidKey(`the ${which} key function of job ${job} must return a non-empty string, returned ${show(value)}`);
  }
  return `${job}:${value}`;
}

function invalidKey(message: string): FailedOutcome {
  return permanentFailure("invalid_limit_key", "InvalidLimitKeyError", message);
}
