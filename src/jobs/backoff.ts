import { ValidationError } from "../errors.ts";

export interface BackoffOptions {
  /** Delay before the first retry. Default 5,000 ms. */
  baseMs?: number;
  /** Upper bound of any delay. Default 300,000 ms (5 minutes). */
  maxMs?: number;
  /** Fraction of the delay randomised either way (0.15 = ±15%), so retries of a burst spread out. Default 0.15. */
  jitter?: number;
}

export const DEFAULT_BACKOFF: Required<BackoffOptions> = { baseMs: 5_000, maxMs: 300_000, jitter: 0.15 };

export function resolveBackoff(options: BackoffOptions | undefined, owner: string): Required<BackoffOptions> {
  const resolved = { ...DEFAULT_BACKOFF, ...options };
  for (const key of ["baseMs", "maxMs"] as const) {
    const value = resolved[key];
    if (!Number.isFinite(value) || value < 0) {
      throw new ValidationError("INVALID_OPTION", `${owner}: backoff.${key} must be a number >= 0, got ${String(value)}`);
    }
  }
  if (!(resolved.jitter >= 0 && resolved.jitter <= 1)) {
    throw new ValidationError("INVALID_OPTION", `${owner}: backoff.jitter must be between 0 and 1, got ${String(resolved.jitter)}`);
  }
  return resolved;
}

/**
 * Exponential backoff with jitter: baseMs * 2^(attempt-1), capped at maxMs, then spread by
 * ±jitter. `attempt` is the attempt that just failed (1 for the first run).
 */
export function backoffDelayMs(backoff: Required<BackoffOptions>, attempt: number, random: () => number = Math.random): number {
  const exponent = Math.max(0, attempt - 1);
  const raw = Math.min(backoff.maxMs, backoff.baseMs * 2 ** Math.min(exponent, 30));
  const spread = raw * backoff.jitter * (random() * 2 - 1);
  return Math.max(0, Math.round(Math.min(backoff.maxMs, raw + spread)));
}
