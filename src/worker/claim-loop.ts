import { Wakeup } from "./wakeup.ts";

/** One per claim/ack connection of the worker's pool. */
const MAX_CLAIMS_IN_FLIGHT = 2;

/** What the claim loop needs of its worker. */
export interface ClaimLoopHost {
  /** capacity + prefetch: the most messages the worker may hold, running or buffered. */
  total: number;
  pollIntervalMs: number;
  isRunning(): boolean;
  /** Messages the worker holds now: running plus buffered (not counting claims under way). */
  held(): number;
  poolIdle(): boolean;
  /** Hands buffered messages to the pool. */
  pump(): void;
  /** Claims up to `size` messages (into the worker's buffer); returns how many. */
  claim(size: number): Promise<number>;
  onClaimed(): void;
  onClaimFailed(error: unknown): void;
  /** A sleep ran out with no wake-up: the backstop poll is due. */
  onPollDue(): void;
}

/**
 * Paces a worker's claims: claims as many as it has room for, wakes on NOTIFY and on every
 * completion (polling only as a backstop), and keeps up to two claims in flight while a
 * backlog lasts, one per connection, so the database works on the next batch while the
 * last one's round trip is under way.
 */
export class ClaimLoop {
  readonly #host: ClaimLoopHost;
  readonly #wakeup = new Wakeup();
  #maybeMore = true;
  /** Counts wake(true) calls, so a claim can tell whether one came in while it ran. */
  #wakesForMore = 0;
  #pollDue = false;
  /** Claims under way, and the room they reserved. */
  readonly #inFlight = new Set<Promise<void>>();
  #reserved = 0;
  #lastClaimFull = false;
  #backoffUntil = 0;

  constructor(host: ClaimLoopHost) {
    this.#host = host;
  }

  /** Whether the last claim came back full or a notification arrived since: a completion is then worth a claim. */
  get maybeMore(): boolean {
    return this.#maybeMore;
  }

  /** Cuts the current sleep short; `maybeMore`: there may be messages to claim (a notification, a free slot). */
  wake(maybeMore: boolean): void {
    if (maybeMore) {
      this.#maybeMore = true;
      this.#wakesForMore++;
    }
    this.#wakeup.wake();
  }

  /** Runs until the host stops running, then waits for the claims under way. */
  async run(): Promise<void> {
    const host = this.#host;
    // Claim only when a worthwhile batch fits (or the pool is idle), so a stream of single
    // completions does not turn into a stream of single-row claims.
    const minClaim = Math.max(1, Math.ceil(host.total / 4));
    // Each claim takes at most half of what the worker may hold, so two run at once.
    const claimSize = Math.max(1, Math.ceil(host.total / 2));
    while (host.isRunning()) {
      host.pump();
      const room = host.total - host.held() - this.#reserved;
      const mayLaunch =
        Date.now() >= this.#backoffUntil &&
        (this.#inFlight.size === 0 || (this.#inFlight.size < MAX_CLAIMS_IN_FLIGHT && this.#lastClaimFull));
      const worthIt = room >= minClaim || (host.poolIdle() && this.#reserved === 0);
      if (mayLaunch && room > 0 && worthIt && this.#takeDue()) {
        this.#launch(Math.min(room, claimSize));
        continue;
      }
      const backoffLeft = this.#backoffUntil - Date.now();
      await this.#sleep(backoffLeft > 0 ? Math.min(backoffLeft, host.pollIntervalMs) : host.pollIntervalMs);
    }
    await Promise.all(this.#inFlight);
  }

  /** Runs one claim without blocking the loop; its room stays reserved until it returns. */
  #launch(size: number): void {
    this.#reserved += size;
    const claim = this.#claim(size).finally(() => {
      this.#reserved -= size;
      this.#inFlight.delete(claim);
      this.wake(false);
    });
    this.#inFlight.add(claim);
  }

  async #claim(size: number): Promise<void> {
    const wakesBefore = this.#wakesForMore;
    try {
      const claimed = await this.#host.claim(size);
      this.#lastClaimFull = claimed === size;
      // A claim that came back short says nothing of a notification that arrived while it
      // ran (its message may have committed after the claim's snapshot): that one still counts.
      this.#maybeMore = this.#lastClaimFull || this.#wakesForMore !== wakesBefore;
      this.#host.onClaimed();
    } catch (error) {
      this.#lastClaimFull = false;
      this.#host.onClaimFailed(error);
      this.#backoffUntil = Date.now() + Math.min(5_000, this.#host.pollIntervalMs * 2);
    }
  }

  #takeDue(): boolean {
    const due = this.#maybeMore || this.#pollDue;
    this.#pollDue = false;
    return due;
  }

  async #sleep(ms: number): Promise<void> {
    if (!this.#host.isRunning()) return;
    if (!(await this.#wakeup.sleep(ms))) {
      this.#pollDue = true;
      this.#host.onPollDue();
    }
  }
}
