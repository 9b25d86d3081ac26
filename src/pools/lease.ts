/**
 * Milliseconds on a clock every thread of the process reads alike. performance.now()
 * counts from each thread's own start, so a deadline set on the worker's thread would mean
 * another time inside a pool thread; timeOrigin + now() is the same instant everywhere
 * (measured within a few ms between threads) and, unlike Date.now(), advances steadily.
 */
export function leaseClock(): number {
  return performance.timeOrigin + performance.now();
}

/** A performance.now() time of this thread on the leaseClock(). */
export function toLeaseClock(performanceNow: number): number {
  return performance.timeOrigin + performanceNow;
}

/**
 * Until when the claims of a pool's runs are surely held, in leaseClock() time: each run
 * carries its own deadline (from its claim), and the worker moves the pool-wide one out
 * after every extension that reached all its claims. A run that has not started by the
 * later of the two may be running on another worker by now, so it must not start.
 *
 * The pool-wide deadline lives in shared memory so that a pool thread reads the current
 * one at the moment a run starts there, not the one the run was posted with: a task that
 * waits behind a busy thread while its worker keeps extending is still owned.
 */
export class LeaseHorizon {
  /** Shared with the pool's threads (ThreadData.leases). */
  readonly buffer: SharedArrayBuffer;
  readonly #extended: BigInt64Array;

  constructor(buffer: SharedArrayBuffer = new SharedArrayBuffer(BigInt64Array.BYTES_PER_ELEMENT)) {
    this.buffer = buffer;
    this.#extended = new BigInt64Array(buffer);
  }

  /** Every run posted so far is held until at least `until` (leaseClock() ms). Never moves back. */
  extend(until: number): void {
    const next = BigInt(Math.floor(until));
    if (next > Atomics.load(this.#extended, 0)) Atomics.store(this.#extended, 0, next);
  }

  /**
   * Whether a run posted with `leaseUntil` may no longer start (undefined: it has no lease
   * to lose), or is past its `startBy` (PostOptions.startBy), which no extension moves.
   */
  expired(leaseUntil: number | undefined, startBy?: number): boolean {
    const now = leaseClock();
    if (startBy !== undefined && now > startBy) return true;
    if (leaseUntil === undefined) return false;
    return now > Math.max(leaseUntil, Number(Atomics.load(this.#extended, 0)));
  }
}
