/**
 * An interruptible sleep for a polling loop: wake() cuts the current sleep short, or the
 * next one if the loop is busy, so a notification that arrives mid-claim is not lost.
 */
export class Wakeup {
  #pending = false;
  #interrupt: (() => void) | null = null;

  wake(): void {
    this.#pending = true;
    this.#interrupt?.();
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
