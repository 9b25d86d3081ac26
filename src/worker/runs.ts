import type { JobDefinition } from "../jobs/define.ts";
import { type FailedOutcome, type JobOutcome, failedOutcome } from "../jobs/outcome.ts";
import type { JobRegistry } from "../jobs/registry.ts";
import type { SafeEmitter } from "../observability/emitter.ts";
import type { WorkerEvents } from "../observability/events.ts";
import { tracePerform } from "../observability/tracing.ts";
import type { ExecutionPool } from "../pools/types.ts";
import type { RoutedMessage } from "./options.ts";
import type { BreakerEvents } from "./breaker-events.ts";
import type { PendingWork } from "./pending-work.ts";
import { type InFlightRun, type Settler, claimOf, jobRef } from "./settler.ts";
import { abortedOutcome } from "../pools/outcomes.ts";
import { cancelReason } from "./cancellation.ts";
import { unrunnableOutcome } from "./unrunnable.ts";
import type { Claim, ClaimedMessage } from "./worker-store.ts";

export interface RunsDependencies {
  pool: ExecutionPool;
  registry: JobRegistry;
  routeMessage: (queue: string, message: unknown) => RoutedMessage | null;
  settler: Settler;
  breaker: BreakerEvents;
  emitter: SafeEmitter<WorkerEvents>;
  /** Every run's follow-up (ack, retry, dead-lettering) is counted here until it is done. */
  followUps: PendingWork;
  /** Whether a cancel was heard for this message before its run started (Cancellations.takeRequested). */
  cancelRequested: (queue: string, messageId: string) => boolean;
}

/**
 * The runs a worker has handed to its pool: starts a claimed message's run (or settles it
 * at once when there is nothing to run), and has the settler carry out each outcome.
 */
export class Runs {
  readonly #deps: RunsDependencies;
  readonly #inFlight = new Map<string, InFlightRun>();

  constructor(deps: RunsDependencies) {
    this.#deps = deps;
  }

  get size(): number {
    return this.#inFlight.size;
  }

  /**
   * A message this worker claimed again while its run is still under way (its VT lapsed in
   * a stalled loop or database): the run goes on under the new claim, and true is returned
   * so that a second copy does not start.
   */
  reclaimed(queue: string, message: ClaimedMessage): boolean {
    const running = this.#inFlight.get(`${queue}:${message.msgId}`);
    if (running) running.readCt = message.readCt;
    return running !== undefined;
  }

  /** Shutdown timeout: every run still under way will be released, not failed. Returns how many. */
  abandonAll(): number {
    for (const run of this.#inFlight.values()) run.abandoned = true;
    return this.#inFlight.size;
  }

  /**
   * A cancel for a message running here: its run will be settled as cancelled and its
   * ctx.signal is aborted. False when no run of it is in flight here.
   */
  cancel(queue: string, messageId: string): boolean {
    const run = this.#inFlight.get(`${queue}:${messageId}`);
    if (!run) return false;
    if (!run.cancelled) {
      run.cancelled = true;
      this.#deps.pool.abortRun({ queue, messageId }, cancelReason());
    }
    return true;
  }

  *claims(): Iterable<{ queue: string; claim: Claim }> {
    for (const run of this.#inFlight.values()) yield { queue: run.queue, claim: claimOf(run) };
  }

  /** A claimed message that cannot run (e.g. its limit key fails): settled at once, through the same decision as a finished run. */
  settleUnrun(queue: string, message: ClaimedMessage, job: string, outcome: FailedOutcome): void {
    this.#deps.followUps.track(this.#settle(this.#runOf(queue, message, job), undefined, outcome) ?? Promise.resolve());
  }

  /**
   * `leaseUntil`: until when the claim is surely held (PostOptions.leaseUntil); `startBy`:
   * the last moment its rate limit lets it start (PostOptions.startBy). The pool does not
   * start the run later than either.
   */
  start(queue: string, message: ClaimedMessage, leaseUntil: number, startBy?: number): void {
    const routed = message.routed !== undefined ? message.routed : this.#deps.routeMessage(queue, message.message);
    const definition = routed ? this.#deps.registry.get(routed.job) : undefined;
    const run = this.#runOf(queue, message, routed?.job ?? "(invalid message)");
    if (message.probe) this.#deps.breaker.probeStarted(queue, message.msgId);
    const unrunnable = run.cancelled ? abortedOutcome(cancelReason()) : unrunnableOutcome(message, routed, definition);
    if (unrunnable || !routed || !definition) {
      // Nothing to run (or cancelled before it started): settled at once, through the same decision as a finished run.
      this.#deps.followUps.track(this.#settle(run, undefined, unrunnable!) ?? Promise.resolve());
      return;
    }
    this.#inFlight.set(`${queue}:${message.msgId}`, run);
    if (this.#deps.emitter.has("job:start")) this.#deps.emitter.emit("job:start", jobRef(run));
    const signal = definition.timeoutMs ? AbortSignal.timeout(definition.timeoutMs) : undefined;
    let outcome: Promise<JobOutcome>;
    try {
      outcome = tracePerform(run, message.headers, () =>
        this.#deps.pool.post(
          { job: run.job, payload: routed.payload, messageId: message.msgId, attempt: message.readCt, queue },
          { signal, leaseUntil, startBy },
        ),
      );
    } catch (error) {
      outcome = Promise.resolve(failedOutcome(error));
      run.abandoned = true; // not run at all: give the message back rather than count a failure
    }
    this.#deps.followUps.begin();
    void outcome.then((result) => {
      const followUp = this.#settle(run, definition, result);
      if (followUp) this.#deps.followUps.track(followUp);
      this.#deps.followUps.end();
    });
  }

  #runOf(queue: string, message: ClaimedMessage, job: string): InFlightRun {
    const run: InFlightRun = {
      queue,
      messageId: message.msgId,
      job,
      attempt: message.readCt,
      readCt: message.readCt,
      startedAt: performance.now(),
      abandoned: false,
      cancelled: message.cancelRequested === true || this.#deps.cancelRequested(queue, message.msgId),
    };
    if (message.batchId !== undefined) run.batchId = message.batchId;
    if (message.probe) run.probe = true;
    return run;
  }

  #settle(run: InFlightRun, definition: JobDefinition | undefined, outcome: JobOutcome): Promise<void> | undefined {
    this.#inFlight.delete(`${run.queue}:${run.messageId}`);
    return this.#deps.settler.settle(run, definition, outcome);
  }
}
