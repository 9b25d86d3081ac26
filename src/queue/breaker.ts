import type { Queryable } from "../db/queryable.ts";
import { ValidationError } from "../errors.ts";
import { CONFIGURE_BREAKER, QUEUE_STATE, QUEUE_STATES } from "./breaker-sql.ts";
import { validateQueueName } from "./names.ts";

/**
 * The circuit breaker of a queue: after `threshold` consecutive failed runs the queue is
 * paused (every worker stops claiming from it) for a back-off; then one probe job is let
 * through: its success closes the breaker, its failure opens it again with the back-off
 * doubled, up to `maxMs`. The state is in pgbus.queue_states, so it holds across processes;
 * failures are counted by the statement that records them (migration pgbus/0013).
 */
export interface CircuitBreakerOptions {
  /** Consecutive failed runs that open the breaker. Default 5. */
  threshold?: number;
  /** First back-off, in ms. Default 30,000. */
  baseMs?: number;
  /** Longest back-off, in ms (the back-off doubles up to it). Default 600,000. */
  maxMs?: number;
}

export type ResolvedCircuitBreaker = Required<CircuitBreakerOptions>;

export const CIRCUIT_BREAKER_DEFAULTS: ResolvedCircuitBreaker = Object.freeze({ threshold: 5, baseMs: 30_000, maxMs: 600_000 });

/** The largest back-off: a PostgreSQL integer of ms (about 24 days). */
const MAX_BACKOFF_MS = 2_147_483_647;

function invalid(where: string, message: string): ValidationError {
  return new ValidationError("INVALID_CIRCUIT_BREAKER", where ? `${where}: ${message}` : message);
}

function integer(where: string, name: string, value: unknown, min: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > MAX_BACKOFF_MS) {
    throw invalid(where, `${name} must be an integer from ${min} to ${MAX_BACKOFF_MS}, got ${JSON.stringify(value) ?? String(value)}`);
  }
  return value;
}

/** `true` means the defaults. Throws INVALID_CIRCUIT_BREAKER naming the bad value and what is valid (after `where`, if given). */
export function resolveCircuitBreaker(options: CircuitBreakerOptions | true, where = "circuitBreaker"): ResolvedCircuitBreaker {
  if (options === true) return CIRCUIT_BREAKER_DEFAULTS;
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw invalid(where, `must be true or { threshold?, baseMs?, maxMs? }, got ${JSON.stringify(options) ?? String(options)}`);
  }
  const unknown = Object.keys(options).filter((key) => !(key in CIRCUIT_BREAKER_DEFAULTS));
  if (unknown.length > 0) throw invalid(where, `unknown option ${unknown.join(", ")}; valid: threshold, baseMs, maxMs`);
  const threshold = integer(where, "threshold", options.threshold ?? CIRCUIT_BREAKER_DEFAULTS.threshold, 1);
  const baseMs = integer(where, "baseMs", options.baseMs ?? CIRCUIT_BREAKER_DEFAULTS.baseMs, 1);
  const maxMs = integer(where, "maxMs", options.maxMs ?? Math.max(baseMs, CIRCUIT_BREAKER_DEFAULTS.maxMs), 1);
  if (maxMs < baseMs) throw invalid(where, `maxMs must be >= baseMs (${baseMs}), got ${maxMs}`);
  return { threshold, baseMs, maxMs };
}

/** Records the breaker's settings for a queue (idempotent; the workers of a queue should agree on them). */
export async function configureCircuitBreaker(db: Queryable, queue: string, breaker: ResolvedCircuitBreaker): Promise<void> {
  await db.query(CONFIGURE_BREAKER, [validateQueueName(queue), breaker.threshold, breaker.baseMs, breaker.maxMs]);
}

export type BreakerState = "closed" | "open" | "half_open";

export interface QueueState {
  queue: string;
  /** No worker claims from it: paused by hand, or by its open circuit breaker. */
  paused: boolean;
  pausedAt: Date | null;
  pausedBy: string | null;
  /** Null when the queue has no circuit breaker. */
  breaker: {
    state: BreakerState;
    consecutiveFailures: number;
    threshold: number;
    baseMs: number;
    maxMs: number;
    /** The current back-off (open or half-open), else null. */
    backoffMs: number | null;
    /** Open: when the probe may run; half-open: when the probe's VT runs out. */
    until: Date | null;
    openedAt: Date | null;
  } | null;
}

interface StateRow {
  queue_name: string;
  paused: boolean;
  paused_at: Date | null;
  paused_by: string | null;
  breaker_threshold: number | null;
  breaker_base_ms: number | null;
  breaker_max_ms: number | null;
  consecutive_failures: number;
  breaker_state: BreakerState;
  breaker_backoff_ms: number | null;
  breaker_until: Date | null;
  breaker_opened_at: Date | null;
}

function toQueueState(row: StateRow): QueueState {
  return {
    queue: row.queue_name,
    paused: row.paused,
    pausedAt: row.paused_at,
    pausedBy: row.paused_by,
    breaker:
      row.breaker_threshold === null
        ? null
        : {
            state: row.breaker_state,
            consecutiveFailures: row.consecutive_failures,
            threshold: row.breaker_threshold,
            baseMs: row.breaker_base_ms!,
            maxMs: row.breaker_max_ms!,
            backoffMs: row.breaker_backoff_ms,
            until: row.breaker_until,
            openedAt: row.breaker_opened_at,
          },
  };
}

/** A queue's pause and breaker state (a queue never paused and without a breaker: not paused, no breaker). */
export async function queueState(db: Queryable, queue: string): Promise<QueueState> {
  const { rows } = await db.query(QUEUE_STATE, [validateQueueName(queue)]);
  const row = rows[0] as StateRow | undefined;
  return row ? toQueueState(row) : { queue, paused: false, pausedAt: null, pausedBy: null, breaker: null };
}

/** Every queue that is paused or has a circuit breaker. */
export async function queueStates(db: Queryable): Promise<QueueState[]> {
  return ((await db.query(QUEUE_STATES)).rows as StateRow[]).map(toQueueState);
}
