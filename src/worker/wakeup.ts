/**
 * An interruptible sleep for a polling loop: wake() cuts the current sleep short, or the
 * next one if the loop is busy, so a notification that arrives mid-claim is not lost.
 */
export class Wakeup {
  #pending = false;
  #interrupt: (() => void) | null = null;

  wake(): void {
    this.#pending = true;
    // Called on every job completion: only the first wake of a sleep has work to do.
    const interrupt = this.#interrupt;
    this.#interrupt = null;
    interrupt?.();
  }

  /** Resolves true when woken, false when `ms` passed without a wake(). */
  async sleep(ms: number): Promise<boolean> {
    if (this.#pending) {
      this.#pending = false;
      return true;
    }
    const woken = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      this.#interrupt = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
    this.#interrupt = null;
    this.#pending = false;
    return woken;
  }
}
