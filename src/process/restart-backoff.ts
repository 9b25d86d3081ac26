export interface RestartBackoffOptions {
  /** Delay before the first restart. Default 1,000 ms. */
  baseMs: number;
  /** Upper bound of any delay. Default 60,000 ms. */
  maxMs: number;
  /** A child that stayed up this long earns a fresh start at baseMs. Default 30,000 ms. */
  resetAfterMs: number;
}

export const DEFAULT_RESTART_BACKOFF: RestartBackoffOptions = { baseMs: 1_000, maxMs: 60_000, resetAfterMs: 30_000 };

/**
 * Delays between re-forks of one child slot: 1s, 2s, 4s ... capped at 60s, so a child that
 * crashes at boot (bad jobs module, database refusing connections) cannot hammer the
 * database with a connection storm; back to 1s once a child stayed up 30s.
 */
export class RestartBackoff {
  readonly #options: RestartBackoffOptions;
  #next: number;

  constructor(options: Partial<RestartBackoffOptions> = {}) {
    this.#options = { ...DEFAULT_RESTART_BACKOFF, ...options };
    this.#next = this.#options.baseMs;
  }

  /** The delay before restarting a child that died after running `uptimeMs`. */
  next(uptimeMs: number): number {
    if (uptimeMs >= this.#options.resetAfterMs) this.#next = this.#options.baseMs;
    const delay = this.#next;
    this.#next = Math.min(this.#options.maxMs, delay * 2);
    return delay;
  }
}
