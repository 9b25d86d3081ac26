import type { ErrorRecord } from "../errors.ts";
import type { JobDefinition } from "../jobs/define.ts";
import type { FailedOutcome, JobOutcome } from "../jobs/outcome.ts";
import { type Settlement, decideSettlement } from "../jobs/settlement.ts";
import type { SafeEmitter } from "../observability/emitter.ts";
import type { JobRef, WorkerEvents } from "../observability/events.ts";
import type { DeadLetterReason } from "../queue/dead-letter.ts";
import type { Acker } from "./acker.ts";
import { claimsByQueue } from "./claimed-buffer.ts";
import type { BreakerEvents } from "./breaker-events.ts";
import type { Claim, ClaimedMessage, WorkerStore } from "./worker-store.ts";

/** A message handed to the pool (or found to have nothing to run), until it is settled. */
export interface InFlightRun extends JobRef {
  /** The read_ct of the claim this worker holds: fences every outcome statement. */
  readCt: number;
  startedAt: number;
  /** This worker gave the run up (shutdown timeout, the pool refused it): released, not failed. */
  abandoned: boolean;
  /** Its cancel was requested (bus.cancel) before the run ended: settled as cancelled whatever its outcome. */
  cancelled: boolean;
  /** The batch of the job, if any: its ack goes to the batch acker, which also counts it. */
  batchId?: string;
  /** The probe of a half-open circuit breaker. */
  probe?: boolean;
}

export interface SettlerDependencies {
  store: WorkerStore;
  acker: Acker;
  /** Acks jobs of batches (ackBatchJobs): kept apart so acks of other jobs stay one plain statement. */
  batchAcker: Acker;
  breaker: BreakerEvents;
  emitter: SafeEmitter<WorkerEvents>;
  reportError: (error: unknown, context: string) => void;
  /** An outcome matched nothing: another worker claimed the message since (this one stalled past its VT). */
  reportLost: (what: string, ref: JobRef) => void;
  /** Every claim that ends here, run or not (flow limits free the slots they hold). */
  onFinished?: (queue: string, claims: readonly Claim[]) => void;
}

export function claimOf(run: InFlightRun): Claim {
  return { id: run.messageId, readCt: run.readCt };
}

export function jobRef(run: InFlightRun): JobRef {
  return { queue: run.queue, messageId: run.messageId, job: run.job, attempt: run.attempt };
}

/**
 * Carries out what jobs/settlement.ts decides for a finished run: joins the ack batch,
 * schedules the retry, moves the message to the DLQ or releases it, emits the job's event
 * and counts it. A statement that fails is reported and left to the VT: the message comes
 * back, so a lost settlement means a repeat run, never a lost job.
 */
export class Settler {
  readonly #deps: SettlerDependencies;
  readonly stats = { processed: 0, failed: 0, retried: 0, deadLettered: 0, cancelled: 0 };

  constructor(deps: SettlerDependencies) {
    this.#deps = deps;
  }

  /** Carries out the settlement of a finished run. A success only joins the next ack batch (no promise). */
  settle(run: InFlightRun, definition: JobDefinition | undefined, outcome: JobOutcome): Promise<void> | undefined {
    const claim = claimOf(run);
    this.#deps.onFinished?.(run.queue, [claim]);
    const verdict = decideSettlement({
      outcome,
      abandoned: run.abandoned,
      cancelled: run.cancelled,
      policy: definition,
      attempt: run.attempt,
    });
    if (verdict.action === "cancel") return this.#cancel(run, true).then(() => undefined);
    if (verdict.action === "ack") {
      this.stats.processed++;
      if (run.probe) return this.#ackProbe(run);
      (run.batchId === undefined ? this.#deps.acker : this.#deps.batchAcker).add(run.queue, claim);
      if (this.#deps.emitter.has("job:success")) {
        // Built field by field: the one event every job emits (metrics count it), so no spread.
        const { queue, messageId, job, attempt } = run;
        this.#deps.emitter.emit("job:success", { queue, messageId, job, attempt, durationMs: performance.now() - run.startedAt });
      }
      return undefined;
    }
    // A failure or a release: a cancel requested that this worker never heard of (its
    // notification was lost) still wins, checked first in the database, so a cancelled job
    // is never retried, dead-lettered or handed out again.
    return this.#cancel(run, false).then((cancelled) => (cancelled ? undefined : this.#carryOut(run, definition, outcome, verdict)));
  }

  /**
   * Archives the run's message as cancelled if its cancel is requested in the database;
   * whether it did. `expected`: this worker knows of the request (the verdict is cancel).
   */
  async #cancel(run: InFlightRun, expected: boolean): Promise<boolean> {
    try {
      if ((await this.#deps.store.cancel(run.queue, [claimOf(run)])) === 0) {
        // Expected to be cancelled, yet not: another worker claimed the message since.
        if (expected) this.#deps.reportLost("cancel", jobRef(run));
        return false;
      }
    } catch (error) {
      this.#deps.reportError(
        error,
        `cancelling message ${run.messageId} of ${run.queue} failed; it returns after its VT and is cancelled then`,
      );
      // Carry on as decided: a retry or release brings the message back, and the claim that
      // takes it next sees the request (when the cancel itself failed, the VT brings it back).
      return false;
    }
    this.stats.cancelled++;
    this.#deps.emitter.emit("job:cancelled", { ...jobRef(run), durationMs: performance.now() - run.startedAt });
    return true;
  }

  #carryOut(run: InFlightRun, definition: JobDefinition | undefined, outcome: JobOutcome, verdict: Settlement): Promise<void> | undefined {
    if (verdict.action === "release") {
      this.#deps.emitter.emit("job:released", { ...jobRef(run), started: verdict.started, durationMs: performance.now() - run.startedAt });
      // Fenced like every outcome: a run whose lease ran out finds its message claimed by
      // another worker more often than not, and leaves it alone (reported as lost).
      return this.#deps.store.release(run.queue, [claimOf(run)], { started: verdict.started }).then(
        (released) => (released === 0 ? this.#deps.reportLost("release", jobRef(run)) : undefined),
        (error: unknown) => this.#deps.reportError(error, "releasing a job that did not finish failed; it returns after its VT"),
      );
    }
    if (verdict.action !== "retry" && verdict.action !== "dead_letter") return undefined;
    const error = (outcome as FailedOutcome).error;
    if (definition) {
      // A run that started and failed; a message with nothing to run goes to the DLQ without one.
      this.stats.failed++;
      const retryInMs = verdict.action === "retry" ? verdict.delayMs : null;
      this.#deps.emitter.emit("job:failure", { ...jobRef(run), error, durationMs: performance.now() - run.startedAt, retryInMs });
    }
    if (verdict.action === "dead_letter") return this.#deadLetter(run, error, verdict.reason);
    return this.#deps.store.retry(run.queue, claimOf(run), verdict.delayMs, error).then(
      (retried) => {
        if (!retried) return this.#deps.reportLost("retry", jobRef(run));
        this.stats.retried++;
        return this.#afterFailure(run);
      },
      (failure: unknown) => this.#deps.reportError(failure, "scheduling a retry failed; the job returns after its VT"),
    );
  }

  /** Reports the queue's circuit breaker opening, if this failure opened it. */
  #afterFailure(run: InFlightRun): Promise<void> {
    return this.#deps.breaker
      .afterFailure(run.queue, claimOf(run), run.probe === true)
      .catch((error: unknown) => this.#deps.reportError(error, `reading the circuit breaker of ${run.queue} failed`));
  }

  #ackProbe(run: InFlightRun): Promise<void> {
    return this.#deps.breaker.probeSucceeded(run.queue, claimOf(run), run.batchId !== undefined).then(
      (acked) => (acked ? undefined : this.#deps.reportLost("ack", jobRef(run))),
      (error: unknown) =>
        this.#deps.reportError(error, `ack of the circuit breaker's probe in ${run.queue} failed; it returns after its VT`),
    );
  }

  async #deadLetter(run: InFlightRun, error: ErrorRecord, reason: DeadLetterReason): Promise<void> {
    const ref = jobRef(run);
    try {
      if (!(await this.#deps.store.deadLetter(ref.queue, claimOf(run), { ...error, reason }))) {
        this.#deps.reportLost("dead-letter", ref);
        return;
      }
      this.stats.deadLettered++;
      this.#deps.emitter.emit("job:dead", { ...ref, error, reason });
      await this.#afterFailure(run);
    } catch (failure) {
      this.#deps.reportError(failure, `moving message ${ref.messageId} of ${ref.queue} to the DLQ failed; it returns after its VT`);
    }
  }

  /** Claimed messages that never started go back at once, not counted as an attempt (fenced: a lost one is left alone). */
  async releaseUnstarted(messages: ReadonlyArray<{ queue: string; message: ClaimedMessage }>): Promise<void> {
    const byQueue = claimsByQueue(messages.map(({ queue, message }) => ({ queue, claim: { id: message.msgId, readCt: message.readCt } })));
    for (const [queue, claims] of byQueue) {
      this.#deps.onFinished?.(queue, claims);
      await this.#deps.store
        .release(queue, claims, { started: false })
        .catch((error: unknown) => this.#deps.reportError(error, "releasing prefetched messages failed; they return after their VT"));
    }
  }
}
