import { executeJob } from "../jobs/executor.ts";
import type { JobRegistry } from "../jobs/registry.ts";
import { type Logger, silentLogger } from "../logger.ts";
import { LoopBlockMonitor } from "./loop-block-monitor.ts";
import { validateBlockedLoopThreshold } from "./options.ts";
import { LazyAbort } from "./lazy-abort.ts";
import { failedOutcome } from "../jobs/outcome.ts";
import { abortedOutcome, killReason } from "./outcomes.ts";
import { PoolSlots } from "./slots.ts";
import { LeaseHorizon } from "./lease.ts";
import type { ExecutionPool, JobOutcome, JobTask, PostOptions, RunRef } from "./types.ts";

export interface AsyncPoolOptions {
  /** Runs at most this many handlers at once. */
  capacity: number;
  registry: JobRegistry;
  /** Default: silent. */
  logger?: Logger;
  /** Called after every completion, so the worker can claim more at once. */
  onStateChange?: () => void;
  /** Report the event loop as blocked past this many ms while jobs ran. Default 200. */
  blockedLoopThresholdMs?: number;
  /** How long kill() waits for aborted handlers before settling their posts anyway. Default 1,000 ms. */
  killGraceMs?: number;
}

interface Run {
  readonly task: JobTask;
  readonly job: string;
  readonly abort: LazyAbort;
  /** Resolves the post; later calls (the handler settling after kill gave up) are no-ops. */
  readonly settle: (outcome: JobOutcome) => void;
}

/**
 * Handlers run as promises on this event loop, at most `capacity` at once. Suited to I/O
 * bound jobs; a handler that hogs the CPU delays everything else on the loop (including
 * the worker's visibility extensions), which is reported with a hint to use threads mode.
 *
 * `post` throws PoolFullError / PoolClosedError synchronously; an accepted post always
 * resolves with an outcome.
 */
export class AsyncPool implements ExecutionPool {
  readonly mode = "async" as const;
  readonly capacity: number;
  readonly #slots: PoolSlots;
  readonly #registry: JobRegistry;
  readonly #logger: Logger;
  readonly #killGraceMs: number;
  readonly #runs = new Set<Run>();
  readonly #monitor: LoopBlockMonitor;
  readonly #leases = new LeaseHorizon();

  constructor(options: AsyncPoolOptions) {
    this.#logger = options.logger ?? silentLogger;
    this.#slots = new PoolSlots(options.capacity, options.onStateChange, this.#logger);
    this.capacity = this.#slots.capacity;
    this.#registry = options.registry;
    this.#killGraceMs = options.killGraceMs ?? 1_000;
    this.#monitor = new LoopBlockMonitor(
      validateBlockedLoopThreshold(options.blockedLoopThresholdMs ?? 200),
      () => [...this.#runs].map((run) => run.job),
      (blockedMs, jobs) =>
        this.#logger.warn(
          { jobs, blockedMs },
          `event loop blocked for ${blockedMs} ms while running jobs [${jobs.join(", ")}]; ` +
            `CPU-bound jobs belong in threads mode (executionMode: "threads")`,
        ),
    );
  }

  post(task: JobTask, options: PostOptions = {}): Promise<JobOutcome> {
    return this.#slots.run(() => this.#start(task, options));
  }

  availableCapacity(): number {
    return this.#slots.available();
  }

  isIdle(): boolean {
    return this.#slots.busy === 0;
  }

  /** Accepts nothing more; in-flight handlers go on (and the block monitor keeps watching them). */
  shutdown(): void {
    this.#slots.close();
  }

  waitForTermination(ms: number): Promise<boolean> {
    return this.#slots.waitForIdle(ms);
  }

  /**
   * Aborts every in-flight ctx.signal, then waits up to killGraceMs for the handlers to
   * settle. A promise cannot be cancelled, so posts of handlers that ignore their signal
   * are settled as aborted anyway; those handlers run on unobserved.
   */
  async kill(): Promise<void> {
    this.#slots.close();
    this.#monitor.stop();
    const reason = killReason();
    for (const run of this.#runs) run.abort.abort(reason);
    if (await this.#slots.waitForIdle(this.#killGraceMs)) return;
    for (const run of this.#runs) run.settle(abortedOutcome(reason));
    await this.#slots.whenIdle();
  }

  extendLeases(until: number): void {
    this.#leases.extend(until);
  }

  abortRun(ref: RunRef, reason: unknown): void {
    // A scan of at most `capacity` runs, only when a cancel arrives: no per-run index to keep.
    for (const run of this.#runs) {
      if (run.task.messageId === ref.messageId && run.task.queue === ref.queue) run.abort.abort(reason);
    }
  }

  metadata(): { mode: "async"; capacity: number; busy: number } {
    return { mode: this.mode, capacity: this.capacity, busy: this.#slots.busy };
  }

  /**
   * One run, in as few promises as it takes (this is the per-job hot path): the run's
   * promise settles when the handler's outcome arrives, or earlier through kill().
   */
  #start(task: JobTask, { signal: external, leaseUntil, startBy }: PostOptions): Promise<JobOutcome> {
    if (external?.aborted) return Promise.resolve(abortedOutcome(external.reason));
    const abort = new LazyAbort();
    const forwardAbort = external ? (): void => abort.abort(external.reason) : undefined;
    if (forwardAbort) external!.addEventListener("abort", forwardAbort, { once: true });
    return new Promise<JobOutcome>((settle) => {
      const run: Run = { task, job: task.job, abort, settle };
      this.#runs.add(run);
      this.#monitor.jobStarted(run.job);
      const finish = (outcome: JobOutcome): void => {
        this.#runs.delete(run);
        if (forwardAbort) external!.removeEventListener("abort", forwardAbort);
        // Whatever an aborted handler rejects with, report it the way threads mode does
        // (where the thread is terminated and nothing comes back): as an AbortError.
        settle(outcome.ok || !abort.aborted ? outcome : abortedOutcome(abort.reason));
      };
      executeJob(this.#registry, task, abort, this.#logger, () => this.#leases.expired(leaseUntil, startBy)).then(
        finish,
        (thrown: unknown) => finish(failedOutcome(thrown)),
      );
    });
  }
}
