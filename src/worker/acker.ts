import type { AckMode } from "./options.ts";
import type { Claim, PiggybackAck, WorkerStore } from "./worker-store.ts";

/**
 * Collects successful runs and acknowledges them in batches: one statement per queue per
 * flush. A flush starts on the next turn of the event loop after the first completion;
 * completions that arrive while it runs wait for the next one, so under load batches grow
 * by themselves and at rest a lone job is acked within a millisecond or two.
 */
export class Acker {
  readonly #store: Pick<WorkerStore, "ack">;
  readonly #modeFor: (queue: string) => AckMode;
  readonly #onError: (error: unknown, queue: string, claims: Claim[]) => void;
  readonly #onLost: (queue: string, lost: number) => void;
  #pending = new Map<string, Claim[]>();
  #flushing: Promise<void> | null = null;
  #scheduled = false;
  /** Failures are reported once per outage, not once per batch. */
  #failing = false;

  constructor(
    /** `ack` is the store's plain ack, or its ackBatchJobs for the acker of batch jobs. */
    store: Pick<WorkerStore, "ack">,
    modeFor: (queue: string) => AckMode,
    onError: (error: unknown, queue: string, claims: Claim[]) => void,
    /** Acks that matched nothing: another worker claimed those messages since (fenced out). */
    onLost: (queue: string, lost: number) => void,
  ) {
    this.#store = store;
    this.#modeFor = modeFor;
    this.#onError = onError;
    this.#onLost = onLost;
  }

  get pendingCount(): number {
    let count = 0;
    for (const claims of this.#pending.values()) count += claims.length;
    return count;
  }

  add(queue: string, claim: Claim): void {
    const claims = this.#pending.get(queue);
    if (claims) claims.push(claim);
    else this.#pending.set(queue, [claim]);
    this.#schedule();
  }

  /**
   * Hands over the pending acks of one queue, for the worker to send with its next claim
   * (one round trip instead of two). They are no longer this acker's: on failure the
   * caller gives them back with `add`.
   */
  take(queue: string): PiggybackAck | undefined {
    const claims = this.#pending.get(queue);
    if (!claims) return undefined;
    this.#pending.delete(queue);
    return { claims, mode: this.#modeFor(queue) };
  }

  /** Acks everything collected so far (and waits for a flush already under way). */
  async drain(): Promise<void> {
    while (this.#flushing || this.#pending.size > 0) {
      if (this.#flushing) await this.#flushing;
      else await this.#flush();
    }
  }

  #schedule(): void {
    if (this.#scheduled || this.#flushing) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      void this.#flush();
    });
  }

  #flush(): Promise<void> {
    if (this.#flushing) return this.#flushing;
    const batch = this.#pending;
    this.#pending = new Map();
    this.#flushing = (async () => {
      await Promise.all(
        [...batch].map(async ([queue, claims]) => {
          try {
            const acked = await this.#store.ack(queue, claims, this.#modeFor(queue));
            this.#failing = false;
            if (acked < claims.length) this.#onLost(queue, claims.length - acked);
          } catch (error) {
            // Not retried here: the messages stay in the queue and come back after their
            // VT, so a lost ack means a repeat run, never a lost job.
            if (!this.#failing) this.#onError(error, queue, claims);
            this.#failing = true;
          }
        }),
      );
    })().finally(() => {
      this.#flushing = null;
      if (this.#pending.size > 0) this.#schedule();
    });
    return this.#flushing;
  }
}
