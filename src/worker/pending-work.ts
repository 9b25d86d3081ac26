/**
 * Counts work the worker must see finished before it stops: the follow-up of every run
 * (its ack, retry or dead-lettering). A counter, not a set of promises, because there is
 * one per job and the common case (a success, acked later in bulk) is synchronous.
 */
export class PendingWork {
  #count = 0;
  #waiters: Array<() => void> = [];

  begin(): void {
    this.#count++;
  }

  end(): void {
    if (--this.#count > 0) return;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  /** Counts `work` until it settles; it must not reject (callers catch their own errors). */
  track(work: Promise<void>): void {
    this.begin();
    void work.then(() => this.end());
  }

  /** Resolves once nothing is pending. */
  whenDone(): Promise<void> {
    return this.#count === 0 ? Promise.resolve() : new Promise((resolve) => this.#waiters.push(resolve));
  }
}
