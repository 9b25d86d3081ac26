import { randomUUID } from "node:crypto";
import { availableParallelism } from "node:os";
import { BroadcastChannel } from "node:worker_threads";
import { extname } from "node:path";
import { fileURLToPath } from "node:url";
import { Piscina } from "piscina";
import { PgbusError, toErrorRecord } from "../errors.ts";
import { type Logger, silentLogger } from "../logger.ts";
import { abortedOutcome, interruptedOutcome, killReason } from "./outcomes.ts";
import { validateCapacity, validateThreads } from "./options.ts";
import { PoolSlots } from "./slots.ts";
import { LeaseHorizon } from "./lease.ts";
import type { AbortRequest, LoadReport, ThreadData, ThreadRequest } from "./thread-entry.ts";
import type { ExecutionPool, JobOutcome, JobTask, PostOptions, RunRef } from "./types.ts";

export interface ThreadPoolOptions {
  /** Runs at most this many handlers at once, across all threads. */
  capacity: number;
  /** Path or file URL of the module exporting the job definitions; every thread loads it. */
  jobsModule: string;
  /** Default: silent. Handlers inside threads get a silent ctx.logger. */
  logger?: Logger;
  /** Called after every completion, so the worker can claim more at once. */
  onStateChange?: () => void;
  /** Number of threads. Default min(capacity, os.availableParallelism()). */
  threads?: number;
}

type Pool = Piscina<ThreadRequest, JobOutcome | LoadReport>;

/**
 * Handlers run on worker threads (piscina), for CPU-bound jobs that must not block the
 * worker's event loop. Each thread runs up to ceil(capacity / threads) handlers at once, so
 * async handlers keep `capacity` concurrency; our slot counter, not piscina's queue, bounds
 * the total.
 *
 * Aborting a post terminates the thread it runs on (the only way to stop a busy loop), so
 * piscina runs a post that carries a signal alone on a thread; while every thread is taken
 * such a post waits inside piscina, still within capacity. Pass a signal only where a run
 * may need stopping (a job timeout); kill() stops everything without one. A cancel
 * (abortRun) terminates nothing: it is broadcast to every thread of the pool, and the one
 * running that message aborts the run's ctx.signal, so runs keep sharing threads.
 *
 * `post` throws PoolFullError / PoolClosedError synchronously; an accepted post always
 * resolves with an outcome, `{ name: "AbortError" }` when aborted or killed.
 */
export class ThreadPool implements ExecutionPool {
  readonly mode = "threads" as const;
  readonly capacity: number;
  readonly #slots: PoolSlots;
  readonly #piscina: Pool;
  readonly #logger: Logger;
  /** Where abortRun tells the threads which run to abort (see thread-entry.ts). */
  readonly #aborts: BroadcastChannel;
  /** Shared with the threads, which check a run's lease when it starts there (thread-entry.ts). */
  readonly #leases: LeaseHorizon;
  #killedBy: DOMException | undefined;
  #destroyed: Promise<void> | undefined;

  /**
   * Starts the threads and resolves once every one of them has loaded the jobs module, so
   * the pool is ready before the first claim. Rejects with JOBS_MODULE_LOAD_FAILED (and
   * leaves no thread running) when the module cannot be loaded or exports no jobs.
   */
  static async start(options: ThreadPoolOptions): Promise<ThreadPool> {
    const capacity = validateCapacity(options.capacity);
    const threads = validateThreads(options.threads ?? Math.min(capacity, availableParallelism()));
    const logger = options.logger ?? silentLogger;
    const abortChannel = `pgbus-abort-${randomUUID()}`;
    const leases = new LeaseHorizon();
    const piscina: Pool = new Piscina({
      filename: threadEntryUrl(),
      workerData: { jobsModule: options.jobsModule, abortChannel, leases: leases.buffer } satisfies ThreadData,
      minThreads: threads,
      maxThreads: threads,
      concurrentTasksPerWorker: Math.ceil(capacity / threads),
      // Never reached while the slot counter works; a bound instead of an unbounded queue if it did not.
      maxQueue: capacity,
    });
    // Without a listener a thread failing outside any task (a stray callback throwing)
    // would be an 'error' event nobody handles, which crashes the process.
    piscina.on("error", (error: unknown) => logger.error({ err: toErrorRecord(error) }, "a pgbus worker thread failed outside any job"));
    try {
      await loadOnEveryThread(piscina, threads, options.jobsModule);
    } catch (error) {
      await destroyThreads(piscina);
      throw error;
    }
    const slots = new PoolSlots(capacity, options.onStateChange, logger);
    return new ThreadPool(piscina, slots, logger, new BroadcastChannel(abortChannel), leases);
  }

  private constructor(piscina: Pool, slots: PoolSlots, logger: Logger, aborts: BroadcastChannel, leases: LeaseHorizon) {
    this.#piscina = piscina;
    this.#leases = leases;
    this.#aborts = aborts;
    this.#slots = slots;
    this.#logger = logger;
    this.capacity = slots.capacity;
  }

  post(task: JobTask, options: PostOptions = {}): Promise<JobOutcome> {
    return this.#slots.run(() => this.#run(task, options));
  }

  availableCapacity(): number {
    return this.#slots.available();
  }

  isIdle(): boolean {
    return this.#slots.busy === 0;
  }

  /** Accepts nothing more; once in-flight runs end the threads are destroyed so the process can exit. */
  shutdown(): void {
    if (this.#slots.closed) return;
    this.#slots.close();
    void this.#slots.whenIdle().then(() => this.#destroy());
  }

  /** After shutdown(), a true result also means the threads are gone. */
  async waitForTermination(ms: number): Promise<boolean> {
    if (!(await this.#slots.waitForIdle(ms))) return false;
    if (this.#slots.closed) await this.#destroy();
    return true;
  }

  /** Terminates every thread; in-flight posts resolve as aborted. */
  async kill(): Promise<void> {
    this.#killedBy ??= killReason();
    this.#slots.close();
    await this.#destroy();
    await this.#slots.whenIdle();
  }

  extendLeases(until: number): void {
    this.#leases.extend(until);
  }

  abortRun(ref: RunRef, reason: unknown): void {
    // Once the threads are being destroyed their runs end anyway (and the channel is closed).
    if (this.#slots.busy === 0 || this.#destroyed) return;
    const message: AbortRequest = { queue: ref.queue, messageId: ref.messageId, reason: abortMessage(reason) };
    this.#aborts.postMessage(message);
  }

  metadata(): { mode: "threads"; capacity: number; busy: number } {
    return { mode: this.mode, capacity: this.capacity, busy: this.#slots.busy };
  }

  async #run(task: JobTask, { signal, leaseUntil, startBy }: PostOptions): Promise<JobOutcome> {
    try {
      // Only pass a signal when there is one: piscina gives abortable runs a thread each.
      return (await this.#piscina.run({ type: "run", task, leaseUntil, startBy }, signal ? { signal } : {})) as JobOutcome;
    } catch (error) {
      // A rejection is never the handler's failure (executeJob turns those into outcomes):
      // an abort, a kill terminating the thread, or the thread dying under every run on it,
      // whichever run caused it; the others are bystanders and must not pay for it.
      if (signal?.aborted) return abortedOutcome(signal.reason);
      if (this.#killedBy) return abortedOutcome(this.#killedBy);
      return interruptedOutcome(error);
    }
  }

  #destroy(): Promise<void> {
    if (!this.#destroyed) this.#aborts.close();
    this.#destroyed ??= destroyThreads(this.#piscina).catch((error: unknown) => {
      this.#logger.error({ err: toErrorRecord(error) }, "destroying the worker threads failed");
    });
    return this.#destroyed;
  }
}

/** An abort reason crosses to the thread as text (an Error's message), and comes out there as an AbortError. */
function abortMessage(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}

/**
 * piscina replaces a thread that exits while the pool is not destroying, up to minThreads.
 * A thread terminated by an abort can exit after destroy() returned, and would be replaced
 * then, leaking minThreads fresh threads; with minThreads at 0 nothing is replaced.
 */
function destroyThreads(piscina: Pool): Promise<void> {
  piscina.options.minThreads = 0;
  return piscina.destroy();
}

/**
 * thread-entry next to this file, with this file's extension: `.ts` when running from
 * sources under tsx (threads inherit `--import tsx` through execArgv), `.js` from dist.
 */
function threadEntryUrl(): string {
  const extension = extname(fileURLToPath(import.meta.url));
  return new URL(`./thread-entry${extension}`, import.meta.url).href;
}

/**
 * One load request per thread, all sent at once: piscina hands each to an idle thread, so
 * every thread reports whether it could load the module.
 */
async function loadOnEveryThread(piscina: Pool, threads: number, jobsModule: string): Promise<void> {
  let reports: LoadReport[];
  try {
    reports = (await Promise.all(Array.from({ length: threads }, () => piscina.run({ type: "load" })))) as LoadReport[];
  } catch (cause) {
    throw new PgbusError(
      "JOBS_MODULE_LOAD_FAILED",
      `could not start worker threads for jobs module ${jobsModule}: ${toErrorRecord(cause).message}`,
      { cause },
    );
  }
  const failed = reports.find((report) => report.type === "load-failed");
  if (failed?.type === "load-failed") {
    const message =
      failed.code === "JOBS_MODULE_LOAD_FAILED"
        ? failed.error.message
        : `could not load jobs module ${jobsModule}: ${failed.error.message}`;
    throw new PgbusError("JOBS_MODULE_LOAD_FAILED", message);
  }
}
