import { performance } from "node:perf_hooks";

export type LoopBlockedListener = (blockedMs: number, jobs: string[]) => void;

/**
 * Notices when the event loop was blocked while async-mode jobs ran: one unref'd interval
 * whose lateness is the time the loop could not run it.
 *
 * A synchronous handler usually finishes before the late tick fires (its promise settles in
 * microtasks, ahead of timers), so the jobs blamed are every job in flight at any moment
 * since the previous tick, not only those still running when the tick fires. For the same
 * reason the timer is not stopped the instant the pool goes idle: the next tick measures
 * that last stretch, then stops the timer if nothing is in flight any more.
 */
export class LoopBlockMonitor {
  readonly #thresholdMs: number;
  readonly #intervalMs: number;
  readonly #inFlight: () => Iterable<string>;
  readonly #onBlocked: LoopBlockedListener;
  #timer: NodeJS.Timeout | undefined;
  #lastTick = 0;
  #seenSinceTick = new Set<string>();

  constructor(thresholdMs: number, inFlight: () => Iterable<string>, onBlocked: LoopBlockedListener) {
    this.#thresholdMs = thresholdMs;
    // Lateness underestimates a block by at most one interval (the block may start just
    // after a tick), so a quarter of the threshold catches any block of 1.25x the threshold.
    // Capped so a large threshold still gets a timely report; at 50 ms it costs 20 wake-ups
    // a second, and only while jobs are in flight.
    this.#intervalMs = Math.min(Math.max(Math.floor(thresholdMs / 4), 1), 50);
    this.#inFlight = inFlight;
    this.#onBlocked = onBlocked;
  }

  jobStarted(job: string): void {
    this.#seenSinceTick.add(job);
    if (this.#timer) return;
    this.#lastTick = performance.now();
    this.#timer = setInterval(() => this.#tick(), this.#intervalMs).unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#seenSinceTick.clear();
  }

  #tick(): void {
    const now = performance.now();
    const blockedMs = now - this.#lastTick - this.#intervalMs;
    this.#lastTick = now;
    const blamed = [...this.#seenSinceTick];
    this.#seenSinceTick = new Set(this.#inFlight());
    if (this.#seenSinceTick.size === 0) this.stop();
    if (blockedMs > this.#thresholdMs) this.#onBlocked(Math.round(blockedMs), blamed);
  }
}
