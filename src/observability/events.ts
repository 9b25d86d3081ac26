import type { DeadLetterReason } from "../queue/dead-letter.ts";
import type { BreakerState } from "../queue/breaker.ts";
import type { ErrorRecord } from "../errors.ts";
import type { ExecutionMode } from "../pools/types.ts";

/** Identifies one run of one message. */
export interface JobRef {
  queue: string;
  messageId: string;
  job: string;
  attempt: number;
}

/** Events a worker emits (also re-emitted by the Pgbus that created it). */
export interface WorkerEvents {
  "worker:start": { workerId: string; queues: string[]; capacity: number; executionMode: ExecutionMode };
  "worker:stop": { workerId: string; graceful: boolean; abandoned: number };
  /** Something went wrong outside a job (database down, ack failed); the worker carries on. */
  "worker:error": { workerId: string; error: ErrorRecord; context: string };
  "job:start": JobRef;
  "job:success": JobRef & { durationMs: number };
  /** A run failed; `retryInMs` when it will be retried. */
  "job:failure": JobRef & { error: ErrorRecord; durationMs: number; retryInMs: number | null };
  /** The job's cancel was requested (bus.cancel) while it was claimed; its message is archived as cancelled. */
  "job:cancelled": JobRef & { durationMs: number };
  /**
   * A run ended without an outcome and its message is visible again at once, counted as an
   * attempt only if `started`: its handler ran and was given up (the shutdown timeout), or
   * never ran (its claim, or its rate limit's time to start, ran out before it could).
   */
  "job:released": JobRef & { started: boolean; durationMs: number };
  /** The message moved to `<queue>_dlq`. */
  "job:dead": JobRef & { error: ErrorRecord; reason: DeadLetterReason };
  /**
   * A queue's circuit breaker changed state, reported by the worker that caused it: "open"
   * (its failure reached the threshold, or the probe failed), "half_open" (it claimed the
   * probe), "closed" (the probe succeeded; or, from the bus, a manual resume).
   */
  "queue:breaker": {
    queue: string;
    state: BreakerState;
    reason: "failures" | "probe_failed" | "probe_started" | "probe_succeeded" | "resumed";
    /** Open: how long until the probe. */
    backoffMs?: number;
    consecutiveFailures?: number;
  };
}
