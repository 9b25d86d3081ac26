import type { WorkerStore } from "./worker-store.ts";

/**
 * One timer per worker that pushes out the VT of every in-flight message in one statement,
 * so a long job is never handed to a second worker while this one lives. It ticks every
 * third of the VT: two ticks can fail (database blip) before a message could reappear.
 */
export class VisibilityExtender {
  readonly #store: WorkerStore;
  readonly #vtSeconds: number;
  readonly #inFlight: () => ReadonlyMap<string, string[]>;
  readonly #onError: (error: unknown) => void;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  /** Failures are reported once per outage, not once per tick. */
  #failing = false;

  constructor(options: {
    store: WorkerStore;
    vtSeconds: number;
    inFlight: () => ReadonlyMap<string, string[]>;
    onError: (error: unknown) => void;
  }) {
    this.#store = options.store;
    this.#vtSeconds = options.vtSeconds;
    this.#inFlight = options.inFlight;
    this.#onError = options.onError;
  }

  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.extendNow(), Math.max(100, (this.#vtSeconds * 1000) / 3));
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#running;
  }

  /** Extends now (a tick, or at once when the database is back after an outage). */
  extendNow(): void {
    if (this.#running) return; // the previous extension is still under way: don't pile up
    const inFlight = this.#inFlight();
    if (inFlight.size === 0) return;
    this.#running = this.#store
      .extend(inFlight, this.#vtSeconds)
      .then(
        () => {
          this.#failing = false;
        },
        (error: unknown) => {
          if (!this.#failing) this.#onError(error);
          this.#failing = true;
        },
      )
      .finally(() => {
        this.#running = null;
      });
  }
}
