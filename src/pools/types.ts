import type { JobOutcome, JobTask } from "../jobs/outcome.ts";

export type { JobOutcome, JobTask };

export type ExecutionMode = "async" | "threads";

/** Accepted spellings of an execution mode; `fiber` is an alias of `async`. */
export const EXECUTION_MODES = ["async", "threads", "fiber"] as const;
export type ExecutionModeInput = (typeof EXECUTION_MODES)[number];

/** Names one run: the message it runs. */
export interface RunRef {
  queue: string;
  messageId: string;
}

export interface PostOptions {
  /** Aborting it aborts this one run (its ctx.signal in async mode; its thread in threads mode). */
  signal?: AbortSignal;
  /**
   * Until when (leaseClock() ms) the message's claim is surely held, unless extendLeases()
   * moves it out. Checked when the run actually starts (in threads mode, inside the thread:
   * a task can wait there behind a busy one): a run that has not started by then is not run,
   * and its post resolves with leaseExpiredOutcome(). Default: no deadline.
   */
  leaseUntil?: number;
  /**
   * The last moment (leaseClock() ms) the run may start, whatever extendLeases() says: a
   * rate limit counted its start, and a later start would fall outside what it counted.
   * Checked with leaseUntil, with the same result. Default: none.
   */
  startBy?: number;
}

export interface ExecutionPool {
  readonly mode: ExecutionMode;
  readonly capacity: number;
  /** Throws PoolFullError / PoolClosedError at once; never queues. Settles when perform ends. */
  post(task: JobTask, options?: PostOptions): Promise<JobOutcome>;
  /** Free slots: how many messages the worker may read next. */
  availableCapacity(): number;
  /** Nothing in flight. */
  isIdle(): boolean;
  /** Accept nothing more; in-flight runs go on. */
  shutdown(): void;
  /** Resolves true once nothing is in flight, false if `ms` passed first. */
  waitForTermination(ms: number): Promise<boolean>;
  /**
   * Aborts the ctx.signal of the run of that message, if one is in flight (a cancel): the
   * handler decides what to do with it, and its post settles when the handler ends. No-op
   * otherwise. Cooperative in both modes: a thread is not terminated (see PostOptions.signal for that).
   */
  abortRun(run: RunRef, reason: unknown): void;
  /** Every run posted so far is held until at least `until` (leaseClock() ms): the worker extended their claims. */
  extendLeases(until: number): void;
  /** Abort every in-flight run and release resources; settles their posts. */
  kill(): Promise<void>;
  metadata(): { mode: ExecutionMode; capacity: number; busy: number };
}
