import { isQueueGone } from "../queue/missing.ts";
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
  store: Pick<WorkerStore, "ensureQueue" | "listQueues" | "queuesWithWork">;
  /** Called once when a queue turns out to be gone, and once when it is back. */
  onMissing: (queue: string, error: unknown) => void;
  onBack: (queue: string) => void;
  /**
   * The backstop poll runs at least this often even while the worker is busy (a busy
   * worker never sleeps a whole poll interval), so work that appeared without a
   * notification in a cold queue, of any priority, is not left behind a long backlog.
   */
  pollIntervalMs: number;
  clock?: () => number;
}

/**
 * The queues a worker claims from, in priority order: named queues as given, "*" resolved
 * against the queues that exist (listed again every few seconds and whenever a
 * notification names one not seen yet), minus dropped queues, which are skipped for a
 * while and then tried again in case they were recreated.
 *
 * Of those, only queues known to have work are claimed from ("hot"): one a notification
 * named, or one the backstop poll found (one statement for all the queues, see
 * pgbus.queues_with_work). A claim that comes back short drained its queue, which turns
 * cold until it is named again. So a worker over 1,000 queues claims from the few busy
 * ones, and idle it sends one statement per poll, not one per queue. A notification, or a
 * poll that finds the queue, while a claim of it is under way keeps the queue hot (`#notes`
 * counts both), so a message sent just after the claim's snapshot is not left to the next poll.
 */
export class QueueSet {
  readonly #options: QueueSetOptions;
  readonly #wildcard: boolean;
  readonly #clock: () => number;
  #queues: string[] = [];
  #lastRefresh = 0;
  /** Queues whose table is gone, with when to try them again. */
  readonly #missing = new Map<string, number>();
  /** Queues known to have work. */
  readonly #hot = new Set<string>();
  /** Notifications and poll finds per queue, so a claim can tell whether one came in while it ran. */
  readonly #notes = new Map<string, number>();
  #rank = new Map<string, number>();
  #backstopDue = true;
  #lastBackstop = 0;
  #backstop: Promise<void> | null = null;

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
        this.#setQueues([...this.#options.selectors]);
      }
    } else if (force || this.#clock() - this.#lastRefresh >= WILDCARD_REFRESH_MS) {
      this.#lastRefresh = this.#clock();
      const named = this.#options.selectors.filter((queue) => queue !== "*");
      const excluded = new Set([...named, ...this.#options.exclude]);
      const others = (await this.#options.store.listQueues()).filter((queue) => !excluded.has(queue));
      this.#setQueues([...named, ...others]);
    }
    if (this.#backstopDue || this.#clock() - this.#lastBackstop >= this.#options.pollIntervalMs) {
      // A poll asked for while the one joined here was under way (LISTEN came back and the
      // notifications sent meanwhile were lost) is not answered by it: its snapshot may
      // predate their messages. It stays due and runs next, before this claim goes on. Left
      // to a later claim it could wait a whole poll interval: with two claims in flight,
      // both may end without a reason to claim again.
      do {
        this.#backstop ??= this.#runBackstop().finally(() => (this.#backstop = null));
        await this.#backstop;
      } while (this.#backstopDue);
    }
  }

  /** The next refresh runs the backstop poll: the poll interval passed, or notifications may have been lost. */
  pollDue(): void {
    this.#backstopDue = true;
  }

  async #runBackstop(): Promise<void> {
    this.#backstopDue = false;
    this.#lastBackstop = this.#clock();
    const { store } = this.#options;
    try {
      // A store that cannot tell (a test double) has every queue claimed from, as before.
      const found = store.queuesWithWork ? (await store.queuesWithWork(this.#queues)).map((row) => row.queue) : this.#queues;
      for (const queue of found) this.#markHot(queue);
    } catch (error) {
      this.#backstopDue = true; // the claim round reports the outage; poll again next time
      throw error;
    }
  }

  #setQueues(queues: string[]): void {
    this.#queues = queues;
    this.#rank = new Map(queues.map((queue, index) => [queue, index]));
  }

  /** Whether a notification about `queue` concerns this set; a new queue makes the next refresh due. */
  notified(queue: string): boolean {
    const known = this.#rank.has(queue);
    if (!known && !(this.#wildcard && !this.#options.exclude.includes(queue))) return false;
    if (!known) this.#lastRefresh = 0;
    this.#markHot(queue);
    return true;
  }

  /**
   * Known to have work, by a notification or the backstop poll: counted in `#notes` either
   * way, so a claim that started before (and comes back short) does not turn it cold. The
   * poll's finds need it as much as a notification (a message whose notification was
   * lost, a retry come due): left to the next poll, they waited a whole poll interval.
   */
  #markHot(queue: string): void {
    this.#hot.add(queue);
    this.#notes.set(queue, (this.#notes.get(queue) ?? 0) + 1);
  }

  /** Queues to claim from now, in priority order: those known to have work, not skipped as dropped. */
  claimable(): string[] {
    const now = this.#clock();
    const rank = this.#rank;
    return [...this.#hot]
      .filter((queue) => rank.has(queue) && (this.#missing.get(queue) ?? 0) <= now)
      .sort((a, b) => rank.get(a)! - rank.get(b)!);
  }

  /** Taken before a claim of `queue`; hand it back to claimSucceeded. */
  notesOf(queue: string): number {
    return this.#notes.get(queue) ?? 0;
  }

  /** A claim from `queue` failed: true if it failed because the queue is gone (then it is skipped a while). */
  claimFailed(queue: string, error: unknown): boolean {
    if (!isQueueGone(error)) return false;
    if (!this.#missing.has(queue)) this.#options.onMissing(queue, error);
    this.#missing.set(queue, this.#clock() + MISSING_QUEUE_RETRY_MS);
    return true;
  }

  /**
   * A claim of `queue` returned: `drained` when it got fewer messages than it asked for.
   * A drained queue turns cold unless a notification about it came in meanwhile (`notes`,
   * from notesOf before the claim).
   */
  claimSucceeded(queue: string, drained: boolean, notes: number): void {
    if (this.#missing.delete(queue)) this.#options.onBack(queue);
    // A full claim means maybe more, even if a concurrent claim of the queue came back short.
    if (!drained) this.#hot.add(queue);
    else if (this.notesOf(queue) === notes) this.#hot.delete(queue);
  }
}
