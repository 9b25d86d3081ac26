import { parseCancelNotification } from "../queue/cancel-headers.ts";
import type { Claim, WorkerStore } from "./worker-store.ts";

/** The reason a cancelled run's ctx.signal is aborted with. */
export function cancelReason(): DOMException {
  return new DOMException("the job was cancelled (bus.cancel)", "AbortError");
}

/** How long a cancel heard for a message that is not running here is remembered (it may be about to start). */
const REMEMBER_MS = 60_000;
/** Bound on remembered cancels: every worker hears every cancel, most are for messages run elsewhere. */
const MAX_REMEMBERED = 10_000;
/** The backstop check runs at least this often while runs are in flight. */
const MAX_CHECK_INTERVAL_MS = 5_000;

export interface CancellationsOptions {
  store: WorkerStore;
  /** Everything this worker holds (running and buffered), by queue. */
  inFlight: () => ReadonlyMap<string, Claim[]>;
  /** Aborts the run of that message; false when it is not running here (yet). */
  cancelRun: (queue: string, messageId: string) => boolean;
  /** The worker's visibility timeout: the backstop checks every third of it, at most every 5 s. */
  vtSeconds: number;
  onError: (error: unknown) => void;
}

/**
 * A worker's side of cancellation (bus.cancel). A cancel reaches a worker two ways:
 * - its notification (on the queues' channel, see cancel-headers.ts), at once: the run is
 *   aborted, or, when the message is claimed but not running yet (buffered, or its claim
 *   still on the wire), the cancel is remembered and the run starts cancelled;
 * - a periodic check of the in-flight messages for a requested cancel, in case the
 *   notification was lost (LISTEN down, or sent while this worker's claim was on the wire).
 * A message claimed with the request already on it, and a run that fails, are checked by the
 * claim and by the settler; the database, not this memory, decides what ends as cancelled.
 */
export class Cancellations {
  readonly #options: CancellationsOptions;
  /** Cancels heard for messages not running here, by `queue:id`, with when they were heard. */
  readonly #remembered = new Map<string, number>();
  #timer: NodeJS.Timeout | null = null;
  #checking: Promise<void> | null = null;
  /** Failures are reported once per outage, not once per tick. */
  #failing = false;

  constructor(options: CancellationsOptions) {
    this.#options = options;
  }

  start(): void {
    if (this.#timer) return;
    const intervalMs = Math.min(MAX_CHECK_INTERVAL_MS, Math.max(100, (this.#options.vtSeconds * 1000) / 3));
    this.#timer = setInterval(() => this.checkNow(), intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#checking;
  }

  /** Handles a notification if it is a cancel (true), leaving queue wake-ups to the caller (false). */
  notified(payload: string): boolean {
    const cancel = parseCancelNotification(payload);
    if (!cancel) return false;
    this.#cancel(cancel.queue, cancel.messageId);
    return true;
  }

  /** Whether a cancel was heard for this message before its run started (consumed). */
  takeRequested(queue: string, messageId: string): boolean {
    if (this.#remembered.size === 0) return false; // the usual case: one size check per run
    const key = `${queue}:${messageId}`;
    const heardAt = this.#remembered.get(key);
    if (heardAt === undefined) return false;
    this.#remembered.delete(key);
    return performance.now() - heardAt < REMEMBER_MS;
  }

  /** Asks the database which in-flight messages have a cancel requested, and cancels them here. */
  checkNow(): void {
    if (this.#checking) return;
    const inFlight = this.#options.inFlight();
    if (inFlight.size === 0) return;
    this.#checking = this.#options.store
      .cancelRequested(inFlight)
      .then(
        (requested) => {
          this.#failing = false;
          for (const { queue, messageId } of requested) this.#cancel(queue, messageId);
        },
        (error: unknown) => {
          if (!this.#failing) this.#options.onError(error);
          this.#failing = true;
        },
      )
      .finally(() => {
        this.#checking = null;
      });
  }

  #cancel(queue: string, messageId: string): void {
    if (this.#options.cancelRun(queue, messageId)) return;
    const now = performance.now();
    for (const [key, heardAt] of this.#remembered) {
      if (this.#remembered.size < MAX_REMEMBERED && now - heardAt < REMEMBER_MS) break; // oldest first: the rest are newer
      this.#remembered.delete(key);
    }
    const key = `${queue}:${messageId}`;
    this.#remembered.delete(key); // set again at the end, so the map stays oldest first
    this.#remembered.set(key, now);
  }
}
