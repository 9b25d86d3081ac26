import type { DeadLetterReason } from "../queue/dead-letter.ts";
import { type BackoffOptions, backoffDelayMs } from "./backoff.ts";
import type { JobOutcome } from "./outcome.ts";

/**
 * What the worker does with a message once its run is over. Decided in one place, here,
 * from the outcome as data; the worker only carries the verdict out.
 * - ack: archive or delete it (per the queue's ack mode);
 * - retry: make it visible again after `delayMs`;
 * - dead_letter: move it to `<queue>_dlq` with `reason`;
 * - release: make it visible again at once, counting no failure against it (the run was
 *   given up by this worker, e.g. aborted at shutdown, or interrupted by its thread dying,
 *   not failed by the job); `started: false` when the handler never ran (its lease ran out
 *   first), so the claim is not counted as an attempt either;
 * - cancel: archive it as cancelled (its cancel was requested while it ran: whatever the
 *   run's outcome, it is neither acked as a success nor retried nor released).
 */
export type Settlement =
  | { action: "ack" }
  | { action: "retry"; delayMs: number }
  | { action: "dead_letter"; reason: DeadLetterReason }
  | { action: "release"; started: boolean }
  | { action: "cancel" };

export interface SettlementInput {
  outcome: JobOutcome;
  /** This worker gave the run up (shutdown timeout, the pool refused it): not the job's failure. */
  abandoned: boolean;
  /** The job's cancel was requested before its run ended (or before it started): it wins over everything else. */
  cancelled?: boolean;
  /** The job's retry policy; absent when no definition was found. */
  policy: { maxRetries: number; backoff: Required<BackoffOptions> } | undefined;
  /** The attempt that just ended, 1 for the first run. */
  attempt: number;
  /** For the backoff's jitter; tests pass a fixed one. */
  random?: () => number;
}

export function decideSettlement({ outcome, abandoned, cancelled, policy, attempt, random }: SettlementInput): Settlement {
  if (cancelled) return { action: "cancel" };
  if (!outcome.ok && outcome.notStarted) return { action: "release", started: false };
  if (abandoned || (!outcome.ok && outcome.interrupted)) return { action: "release", started: true };
  if (outcome.ok) return { action: "ack" };
  if (outcome.permanent) return { action: "dead_letter", reason: outcome.permanent };
  if (!policy) return { action: "dead_letter", reason: "unknown_job" };
  if (attempt > policy.maxRetries) return { action: "dead_letter", reason: "retries_exhausted" };
  return { action: "retry", delayMs: backoffDelayMs(policy.backoff, attempt, random) };
}

/**
 * Deliveries beyond a job's runs (maxRetries + 1) that a message may get before it is
 * dead-lettered unrun: one spare for an outcome lost to a database outage. More than that
 * means its runs never settle: they crash the process running them (an uncaught exception
 * in a callback, an OOM), so retrying it would crash-loop the worker forever.
 */
export const SPARE_DELIVERIES = 1;

/** Whether a message claimed for the `deliveries`-th time must go to the DLQ instead of running. */
export function exceedsDeliveries(deliveries: number, maxRetries: number): boolean {
  return deliveries > maxRetries + 1 + SPARE_DELIVERIES;
}
