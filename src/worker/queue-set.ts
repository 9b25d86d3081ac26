import { isUndefinedTable } from "../db/pg-errors.ts";
import type { WorkerStore } from "./worker-store.ts";

/** How often a wildcard worker lists the queues again without being told of a new one. */
const WILDCARD_REFRESH_MS = 5_000;
/** How long a dropped queue is skipped before it is looked for again. */
export const MISSING_QUEUE_RETRY_MS = 5_000;

export interface QueueSetOptions {
  /** Queue names in priority order, or containing "*" for every queue (named ones first). */
  selectors: readonly string[];
  /** With "*": queues that other workers own. */
  exclude: readonly string[];
  store: Pick<WorkerStore, "ensureQueue" | "listQueues">;
  /** Called once when a queue turns out to be gone, and once when it is back. */
  onMissing: (queue: string, error: unknown) => void;
  onBack: (queue: string) => void;
  clock?: () => number;
}

/**
 * The queues a worker claims from, in priority order: named queues as given, "*" resolved
 * against the queues that exist (listed again every few seconds and whenever a
 * notification names one not seen yet), minus dropped queues, which are skipped for a
 * while and then tried again in case they were recreated.
 */
export class QueueSet {
  readonly #options: QueueSetOptions;
  readonly #wildcard: boolean;
  readonly #clock: () => number;
  #queues: string[] = [];
  #lastRefresh = 0;
  /** Queues whose table is gone, with when to try them again. */
  readonly #missing = new Map<string, number>();

  constructor(options: QueueSetOptions) {
    this.#options = options;
    this.#wildcard = options.selectors.includes("*");
    this.#clock = options.clock ?? Date.now;
  }

  get all(): readonly string[] {
    return this.#queues;
  }

  /** At start (`force`): creates the named queues; a wildcard set lists queues when due. */
  async refresh(force: boolean): Promise<void> {
    if (!this.#wildcard) {
      if (force) {
        for (const queue of this.#options.selectors) await this.#options.store.ensureQueue(queue);
        this.#queues = [...this.#options.selectors];
      }
      return;
    }
    if (!force && this.#clock() - this.#lastRefresh < WILDCARD_REFRESH_MS) return;
    this.#lastRefresh = this.#clock();
    const named = this.#options.selectors.filter((queue) => queue !== "*");
    const excluded = new Set([...named, ...this.#options.exclude]);
    const others = (await this.#options.store.listQueues()).filter((queue) => !excluded.has(queue));
    this.#queues = [...named, ...others];
  }

  /** Whether a notification about `queue` concerns this set; a new queue makes the next refresh due. */
  notified(queue: string): boolean {
    if (this.#queues.includes(queue)) return true;
    if (this.#wildcard && !this.#options.exclude.includes(queue)) {
      this.#lastRefresh = 0;
      return true;
    }
    return false;
  }

  /** Queues to claim from now, in priority order. */
  claimable(): string[] {
    const now = this.#clock();
    return this.#queues.filter((queue) => (this.#missing.get(queue) ?? 0) <= now);
  }

  /** A claim from `queue` failed: true if it failed because the queue is gone (then it is skipped a while). */
  claimFailed(queue: string, error: unknown): boolean {
    if (!isUndefinedTable(error)) return false;
    if (!this.#missing.has(queue)) this.#options.onMissing(queue, error);
    this.#missing.set(queue, this.#clock() + MISSING_QUEUE_RETRY_MS);
    return true;
  }

  claimSucceeded(queue: string): void {
    if (this.#missing.delete(queue)) this.#options.onBack(queue);
  }
}
