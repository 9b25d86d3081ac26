import type { Claim, WorkerStore } from "./worker-store.ts";

/**
 * One timer per worker that pushes out the VT of every in-flight message in one statement,
 * so a long job is never handed to a second worker while this one lives. It ticks every
 * third of the VT: two ticks can fail (database blip) before a message could reappear.
 */
export class VisibilityExtender {
  readonly #store: WorkerStore;
  readonly #vtSeconds: number;
  readonly #inFlight: () => ReadonlyMap<string, Claim[]>;
  readonly #onError: (error: unknown) => void;
  readonly #onLost: (lost: number) => void;
  readonly #onExtended: ((heldUntil: number) => void) | undefined;
  /** performance.now() when the last extension that reached every message it asked for was sent. */
  #lastFullExtensionAt = Number.NEGATIVE_INFINITY;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  /** Failures are reported once per outage, not once per tick. */
  #failing = false;

  constructor(options: {
    store: WorkerStore;
    vtSeconds: number;
    inFlight: () => ReadonlyMap<string, Claim[]>;
    onError: (error: unknown) => void;
    /** Some messages were claimed by another worker since (this one stalled past their VT). */
    onLost: (lost: number) => void;
    /** An extension reached every held message: they are all held until `heldUntil` (performance.now() ms). */
    onExtended?: (heldUntil: number) => void;
  }) {
    this.#store = options.store;
    this.#vtSeconds = options.vtSeconds;
    this.#inFlight = options.inFlight;
    this.#onError = options.onError;
    this.#onLost = options.onLost;
    this.#onExtended = options.onExtended;
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

  /**
   * Until when (performance.now() time) a message claimed at `claimedAt` and held since is
   * surely still this worker's: its VT from the later of its claim and the last extension
   * that reached every held message. Past that, another worker may have claimed it.
   */
  heldUntil(claimedAt: number): number {
    return Math.max(claimedAt, this.#lastFullExtensionAt) + this.#vtSeconds * 1000;
  }

  /** Extends now (a tick, or at once when the database is back after an outage). */
  extendNow(): void {
    if (this.#running) return; // the previous extension is still under way: don't pile up
    const inFlight = this.#inFlight();
    if (inFlight.size === 0) return;
    let wanted = 0;
    for (const claims of inFlight.values()) wanted += claims.length;
    const sentAt = performance.now();
    this.#running = this.#store
      .extend(inFlight, this.#vtSeconds)
      .then(
        (extended) => {
          this.#failing = false;
          if (extended < wanted) this.#onLost(wanted - extended);
          else {
            this.#lastFullExtensionAt = sentAt;
            this.#onExtended?.(this.heldUntil(sentAt));
          }
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
