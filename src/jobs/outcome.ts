import { type ErrorRecord, toErrorRecord } from "../errors.ts";

/** What runs in a pool: only the job's perform(). Claim and ack stay with the worker. */
export interface JobTask {
  job: string;
  payload: unknown;
  messageId: string;
  attempt: number;
  queue: string;
}

/**
 * Failures that retrying cannot fix, so the message goes straight to the DLQ with this as
 * its reason: the body is not a job envelope, no job of that name is registered, the
 * payload fails the job's schema, or the message was delivered more often than its retries
 * allow without ever settling (its runs crash the process running them), or the key
 * function of one of its limits (concurrency, rateLimit) throws or returns no string.
 */
export type PermanentFailure = "invalid_message" | "unknown_job" | "invalid_payload" | "max_deliveries" | "invalid_limit_key";

/**
 * How a run ended. A failure without `permanent` is retried until the job's maxRetries.
 * `interrupted`: the run ended without an outcome of its own because the thread under it
 * died, by this run's fault or by another run's on the same thread; the message is given
 * back without counting a failure against it (its deliveries still count, so a run that
 * keeps killing its thread ends in the DLQ as max_deliveries).
 * `notStarted`: the handler never ran. "lease_expired": the claim's VT ran out before the
 * run could start (its process froze, or it waited behind a busy thread while the worker
 * could not extend), so another worker may be running it; the message is given back only
 * if it is still this claim's, and the claim is not counted as an attempt.
 */
export type JobOutcome =
  { ok: true } | { ok: false; error: ErrorRecord; permanent?: PermanentFailure; interrupted?: true; notStarted?: "lease_expired" };

export type FailedOutcome = Extract<JobOutcome, { ok: false }>;

/** A run that ended with something thrown outside the handler (a pool or thread failure). */
export function failedOutcome(thrown: unknown): JobOutcome {
  return { ok: false, error: toErrorRecord(thrown) };
}

/** A failure that goes to the DLQ at once, with `reason` as data rather than an error name to match. */
export function permanentFailure(permanent: PermanentFailure, name: string, message: string): FailedOutcome {
  return { ok: false, permanent, error: { name, message } };
}

/** A run not started because its lease had run out: nothing ran, and the message is no longer surely this worker's. */
export function leaseExpiredOutcome(): FailedOutcome {
  return {
    ok: false,
    notStarted: "lease_expired",
    error: { name: "LeaseExpiredError", message: "the run was not started: its claim's visibility timeout ran out before it could start" },
  };
}
