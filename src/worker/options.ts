import type pg from "pg";
import { ValidationError } from "../errors.ts";
import type { TransactionalQueryable } from "../db/queryable.ts";
import type { JobRegistry } from "../jobs/registry.ts";
import type { Logger } from "../logger.ts";
import type { SafeEmitter } from "../observability/emitter.ts";
import type { WorkerEvents } from "../observability/events.ts";
import type { ExecutionMode } from "../pools/types.ts";
import type { NotificationHandlers, NotificationSource } from "./notifications.ts";
import type { WorkerStore } from "./worker-store.ts";
import { MAX_CAPACITY, show } from "../pools/options.ts";
import { type CircuitBreakerOptions, type ResolvedCircuitBreaker, resolveCircuitBreaker } from "../queue/breaker.ts";

/** What a worker does with a message whose job succeeded. */
export const ACK_MODES = ["archive", "delete"] as const;
export type AckMode = (typeof ACK_MODES)[number];

/**
 * The worker's defaults, in one place: the Worker fills its options from these, the config
 * file schema takes its defaults from them, and docs/workers.md lists them (a test checks
 * that table against this object).
 */
export const WORKER_DEFAULTS = Object.freeze({
  capacity: 10,
  executionMode: "async",
  visibilityTimeoutSec: 30,
  pollIntervalMs: 1_000,
  shutdownTimeoutMs: 25_000,
  blockedLoopThresholdMs: 200,
  ackMode: "archive",
  fifo: false,
} as const);

/**
 * The bounds of each numeric option, shared with the config file's schema so that
 * `bus.worker({...})` and `pgbus.config` accept exactly the same values.
 * - visibilityTimeoutSec >= 1: at 0 every claim is visible to every other worker at once.
 * - pollIntervalMs >= 10: at 0 an idle worker busy-loops against the database.
 */
export const WORKER_LIMITS = Object.freeze({
  capacity: { min: 1, max: MAX_CAPACITY },
  visibilityTimeoutSec: { min: 1, max: 43_200 },
  pollIntervalMs: { min: 10, max: undefined },
  shutdownTimeoutMs: { min: 0, max: undefined },
  prefetch: { min: 0, max: 1_000 },
});

export type LimitedOption = keyof typeof WORKER_LIMITS;

/** The rule of an integer option as error messages and the config schema word it. */
export function integerRule(option: LimitedOption): string {
  const { min, max } = WORKER_LIMITS[option];
  return max === undefined ? `an integer >= ${min}` : `an integer from ${min} to ${max}`;
}

/** Throws a ValidationError naming the option, the bad value and what is valid. */
export function checkIntegerOption(option: LimitedOption, value: unknown): number {
  const { min, max } = WORKER_LIMITS[option];
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || (max !== undefined && value > max)) {
    throw new ValidationError("INVALID_OPTION", `worker option ${option} must be ${integerRule(option)}, got ${show(value)}`);
  }
  return value;
}

export function checkAckMode(value: unknown): AckMode {
  if (!ACK_MODES.includes(value as AckMode)) {
    throw new ValidationError("INVALID_OPTION", `worker option ackMode must be one of ${ACK_MODES.join(", ")}, got ${show(value)}`);
  }
  return value as AckMode;
}

/** The worker option `fifo` as a per-queue test; throws a ValidationError naming a bad value. */
export function checkFifo(value: unknown): (queue: string) => boolean {
  if (typeof value === "function") return value as (queue: string) => boolean;
  if (value === undefined || typeof value === "boolean") {
    const fifo = value ?? WORKER_DEFAULTS.fifo;
    return () => fifo;
  }
  throw new ValidationError("INVALID_OPTION", `worker option fifo must be a boolean or a function (queue) => boolean, got ${show(value)}`);
}

export interface WorkerOptions {
  /** Queues in priority order, or ["*"] for every queue (re-resolved as queues appear). */
  queues: string[];
  /** With "*": queues that other workers own. */
  excludeQueues?: string[];
  /** Jobs run at once. Default 10. */
  capacity?: number;
  /** "async" (alias "fiber") or "threads". Default "async". */
  executionMode?: string;
  /** Module exporting the jobs; required in threads mode (each thread loads it). */
  jobsModule?: string;
  /** Seconds a claimed message stays invisible; extended while the job runs. Default 30. */
  visibilityTimeoutSec?: number;
  /**
   * Messages claimed ahead of free slots, so the next job starts the moment a slot frees
   * instead of after a claim round trip. Bounded: a worker holds at most capacity +
   * prefetch messages (their VT is extended like running ones). Default: capacity.
   */
  prefetch?: number;
  /** Backstop poll when no notification arrives. Default 1000 ms. */
  pollIntervalMs?: number;
  /** What happens to a message whose job succeeded. Default "archive". */
  ackMode?: AckMode | ((queue: string) => AckMode);
  /**
   * Claim by FIFO group (true, or per queue): messages enqueued with the same `groupKey`
   * run one at a time in enqueue order, across every worker process, while other groups
   * run in parallel; a group waits while its oldest message runs or waits for a retry.
   * Messages without a groupKey run as usual. Every worker of such a queue must set it.
   * Default false.
   */
  fifo?: boolean | ((queue: string) => boolean);
  /**
   * A queue's own rate limit, on top of its jobs' (`pgbus start` passes the config file's
   * `queues.<name>.rateLimit`): at most `limit` job starts in any `intervalMs` window,
   * across every process. Default: none.
   */
  rateLimitFor?: (queue: string) => QueueRateLimit | undefined;
  /**
   * The row in pgbus.processes of the process running this worker (`pgbus start` sets it):
   * the concurrency slots this worker holds are freed as soon as that row is gone (the
   * supervisor deletes it when the process dies), not only after their VT. Default: none.
   */
  processId?: string;
  /** How long stop() waits for in-flight jobs before aborting them. Default 25,000 ms. */
  shutdownTimeoutMs?: number;
  /** Async mode: warn when a handler blocks the event loop this long. Default 200 ms. */
  blockedLoopThresholdMs?: number;
  /** Threads mode: number of threads. */
  threads?: number;
  /**
   * Opt-in circuit breaker on the worker's queues (`true`: the defaults), or per queue (a
   * function; undefined: none). See CircuitBreakerOptions and docs/workers.md. Every worker
   * of a queue should give it the same settings: the last one to start writes them.
   */
  circuitBreaker?: CircuitBreakerOptions | true | ((queue: string) => CircuitBreakerOptions | true | undefined);
  /**
   * Which job a message is for. Default: the `{ job, payload }` body that enqueue writes.
   * Event consumers route every message of a subscriber's queue to its handler instead.
   * Return null for a message no job can run (it goes to the DLQ as invalid_message).
   */
  routeMessage?: (queue: string, message: unknown) => RoutedMessage | null;
}

/** A queue's rate limit: at most `limit` starts (integer >= 1) in any `intervalMs` (integer >= 1) window. */
export interface QueueRateLimit {
  limit: number;
  intervalMs: number;
}

export interface RoutedMessage {
  job: string;
  payload: unknown;
}

export interface WorkerDependencies {
  /** Claim/ack connections: a small pool or a share of one (unused when `store` is given). */
  db?: TransactionalQueryable;
  /** For the dedicated LISTEN connection (unused when `notifications` is given). */
  clientConfig?: pg.ClientConfig;
  registry: JobRegistry;
  logger: Logger;
  emitter: SafeEmitter<WorkerEvents>;
  /** Called once the worker has stopped, e.g. to close the pool it was given. */
  onStopped?: () => Promise<void>;
  /**
   * Replaces the default store over `db`: the event consumer's skips events an idempotent
   * subscriber already handled and records handled events in the ack statement.
   */
  store?: WorkerStore;
  /** Replaces the worker's own LISTEN connection. */
  notifications?: (handlers: NotificationHandlers) => NotificationSource;
}

export interface WorkerStats {
  processed: number;
  failed: number;
  retried: number;
  deadLettered: number;
  /** Runs settled as cancelled (bus.cancel). */
  cancelled: number;
  busy: number;
  capacity: number;
  executionMode: ExecutionMode;
}

export interface ResolvedWorkerOptions {
  queues: string[];
  excludeQueues: string[];
  capacity: number;
  executionMode: string;
  jobsModule: string | undefined;
  visibilityTimeoutSec: number;
  prefetch: number;
  pollIntervalMs: number;
  ackModeFor: (queue: string) => AckMode;
  fifoFor: (queue: string) => boolean;
  shutdownTimeoutMs: number;
  blockedLoopThresholdMs: number;
  threads: number | undefined;
  breakerFor: (queue: string) => ResolvedCircuitBreaker | undefined;
}

/** Fills defaults and checks every value by the same rules as the config file. */
export function resolveWorkerOptions(options: WorkerOptions): Omit<ResolvedWorkerOptions, "queues"> {
  const capacity = checkIntegerOption("capacity", options.capacity ?? WORKER_DEFAULTS.capacity);
  const ackMode = options.ackMode ?? WORKER_DEFAULTS.ackMode;
  return {
    excludeQueues: options.excludeQueues ?? [],
    capacity,
    executionMode: options.executionMode ?? WORKER_DEFAULTS.executionMode,
    jobsModule: options.jobsModule,
    visibilityTimeoutSec: checkIntegerOption("visibilityTimeoutSec", options.visibilityTimeoutSec ?? WORKER_DEFAULTS.visibilityTimeoutSec),
    prefetch: checkIntegerOption("prefetch", options.prefetch ?? capacity),
    pollIntervalMs: checkIntegerOption("pollIntervalMs", options.pollIntervalMs ?? WORKER_DEFAULTS.pollIntervalMs),
    ackModeFor:
      typeof ackMode === "function"
        ? ackMode
        : (
            (mode: AckMode) => () =>
              mode
          )(checkAckMode(ackMode)),
    fifoFor: checkFifo(options.fifo),
    shutdownTimeoutMs: checkIntegerOption("shutdownTimeoutMs", options.shutdownTimeoutMs ?? WORKER_DEFAULTS.shutdownTimeoutMs),
    blockedLoopThresholdMs: options.blockedLoopThresholdMs ?? WORKER_DEFAULTS.blockedLoopThresholdMs,
    threads: options.threads,
    breakerFor: breakerResolver(options.circuitBreaker),
  };
}

/** Checks a fixed setting at once; a per-queue function's answer on first use of each queue (then remembered). */
function breakerResolver(given: WorkerOptions["circuitBreaker"]): (queue: string) => ResolvedCircuitBreaker | undefined {
  if (given === undefined) return () => undefined;
  if (typeof given !== "function") {
    const resolved = resolveCircuitBreaker(given, "worker option circuitBreaker");
    return () => resolved;
  }
  const byQueue = new Map<string, ResolvedCircuitBreaker | undefined>();
  return (queue) => {
    if (!byQueue.has(queue)) {
      const answer = given(queue);
      byQueue.set(queue, answer === undefined ? undefined : resolveCircuitBreaker(answer, `circuit breaker of queue ${queue}`));
    }
    return byQueue.get(queue);
  };
}
