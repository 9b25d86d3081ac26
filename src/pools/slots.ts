import { PoolClosedError, PoolFullError, toErrorRecord } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { validateCapacity } from "./options.ts";
import { failedOutcome } from "../jobs/outcome.ts";
import type { JobOutcome } from "./types.ts";

/**
 * The bookkeeping both pools share: busy slots bounded by `capacity`, the closed flag,
 * waiters for "nothing in flight", and the `onStateChange` notification. Pools differ only
 * in how a run executes; who may run, and when a slot comes back, is decided here once.
 */
export class PoolSlots {
  readonly capacity: number;
  #busy = 0;
  #closed = false;
  #idleWaiters: Array<() => void> = [];
  readonly #onStateChange: (() => void) | undefined;
  readonly #logger: Logger;

  constructor(capacity: number, onStateChange: (() => void) | undefined, logger: Logger) {
    this.capacity = validateCapacity(capacity);
    this.#onStateChange = onStateChange;
    this.#logger = logger;
  }

  get busy(): number {
    return this.#busy;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Zero once closed: a worker reading it must not claim messages it could not post. */
  available(): number {
    return this.#closed ? 0 : this.capacity - this.#busy;
  }

  /**
   * Takes a slot and calls `start`. Throws PoolClosedError / PoolFullError synchronously,
   * before anything runs, so nothing is ever queued. Once a slot is taken the returned
   * promise always resolves with an outcome (whatever `start` throws or rejects with becomes
   * a failure), and the slot comes back just before it resolves, on every path.
   */
  run(start: () => Promise<JobOutcome>): Promise<JobOutcome> {
    if (this.#closed) throw new PoolClosedError();
    if (this.#busy >= this.capacity) throw new PoolFullError(this.capacity);
    this.#busy++;
    let running: Promise<JobOutcome>;
    try {
      running = start();
    } catch (thrown) {
      running = Promise.reject(thrown);
    }
    return running.then(
      (outcome) => {
        this.#release();
        return outcome;
      },
      (thrown: unknown) => {
        this.#release();
        return failedOutcome(thrown);
      },
    );
  }

  close(): void {
    this.#closed = true;
  }

  whenIdle(): Promise<void> {
    if (this.#busy === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** True once nothing is in flight, false if `ms` passed first. */
  async waitForIdle(ms: number): Promise<boolean> {
    if (this.#busy === 0) return true;
    if (!Number.isFinite(ms)) return this.whenIdle().then(() => true);
    let timer: NodeJS.Timeout | undefined;
    // Kept ref'd: if nothing else held the loop (a handler stuck on a promise nobody will
    // settle), an unref'd timer would let the process exit with this wait still pending.
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), Math.max(0, ms));
    });
    try {
      return await Promise.race([this.whenIdle().then(() => true as const), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  #release(): void {
    this.#busy--;
    if (this.#busy === 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const wake of waiters) wake();
    }
    try {
      this.#onStateChange?.();
    } catch (thrown) {
      // The listener belongs to the worker; its bug must not corrupt the pool's counters.
      this.#logger.error({ err: toErrorRecord(thrown) }, "execution pool onStateChange listener threw; ignored");
    }
  }
}
