import { type Queryable, runStatement } from "../db/queryable.ts";
import type { JobDefinition } from "../jobs/define.ts";
import { type RateLimit, limitKey, resolveRateLimit } from "../jobs/limits.ts";
import type { FailedOutcome } from "../jobs/outcome.ts";
import type { JobRegistry } from "../jobs/registry.ts";
import { ADMIT, RELEASE_SLOTS } from "../queue/limits-sql.ts";
import type { QueueRateLimit, RoutedMessage } from "./options.ts";
import type { PendingWork } from "./pending-work.ts";
import { type Claim, type ClaimedMessage, claimArrays } from "./worker-store.ts";

/**
 * How long a parked message stays invisible when nothing wakes it: a backstop only. A
 * waiter is normally woken by the release of a slot of its key (in the same transaction)
 * or by the maintenance role's sweep; this bounds the wait if both were lost.
 */
export const PARK_SECONDS = 300;

/**
 * How long freed slots wait for a claim of their queue to carry them (in its admission
 * statement) before they are sent on their own: under load a claim comes within a few ms
 * and saves the statement; at rest a waiter is handed its slot this much later.
 */
const RELEASE_FLUSH_MS = 2;

type Verdict = "run" | "parked" | "discarded" | "throttled";

interface AdmitRow {
  msg_id: string;
  verdict: Verdict;
  wait_ms: number | null;
  limited_by: "queue" | "job" | null;
}

/** One claimed message's limits, as pgbus.admit takes them. */
interface Limited {
  message: ClaimedMessage;
  concurrencyKey: string | null;
  concurrency: JobDefinition["concurrency"];
  rateKey: string | null;
  rate: RateLimit | undefined;
  /** A throttle by this limit holds the whole queue (no key splits it). */
  holdsQueue: boolean;
}

export interface LimitGateOptions {
  db: Queryable;
  registry: () => JobRegistry;
  routeMessage: (queue: string, message: unknown) => RoutedMessage | null;
  /** A queue's own rate limit (the config file's `queues.<name>.rateLimit`). */
  queueRateLimit: ((queue: string) => QueueRateLimit | undefined) | undefined;
  /** The pgbus.processes row whose disappearance frees this worker's slots (null: only their VT does). */
  holder: string | null;
  /** A throttled queue may start again: claim from it. */
  onReady: () => void;
  /** A message whose limit key cannot be computed: dead-letter it with this outcome. */
  onInvalidKey: (queue: string, message: ClaimedMessage, job: string, outcome: FailedOutcome) => void;
  reportError: (error: unknown, context: string) => void;
  /** Slot releases are counted here until done, so the worker's stop waits for them. */
  followUps: PendingWork;
}

/**
 * The worker's side of flow limits. Between claim and run, every claimed message of a
 * limited job (or of a rate-limited queue) goes through pgbus.admit in one statement per
 * claim: it runs, or it is parked (waits for a slot of its key), discarded or throttled
 * (visible again when its rate window allows), and only the ones that run reach the pool.
 * A run that held a slot frees it when it ends; releases are batched like acks. A queue
 * throttled by a keyless rate limit is skipped by the claim until it may start again, so
 * the worker's capacity goes to its other queues meanwhile, and a timer wakes the worker
 * then (the throttled messages' return is a VT change, which notifies no one).
 */
export class LimitGate {
  readonly #options: LimitGateOptions;
  /** Runs holding a concurrency slot: queue:msgId -> the read_ct it was taken with. */
  readonly #holding = new Map<string, number>();
  readonly #heldUntil = new Map<string, number>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  #releases = new Map<string, Claim[]>();
  #flushScheduled = false;

  constructor(options: LimitGateOptions) {
    this.#options = options;
  }

  /** Whether claims should skip `queue` for now (a keyless rate limit is exhausted). */
  isHeld(queue: string): boolean {
    const until = this.#heldUntil.get(queue);
    if (until === undefined) return false;
    if (Date.now() < until) return true;
    this.#heldUntil.delete(queue);
    return false;
  }

  /** The claimed messages that may run now, in claim order; the others are taken care of in the database. */
  async admit(queue: string, messages: readonly ClaimedMessage[]): Promise<ClaimedMessage[]> {
    let queueRate: RateLimit | undefined;
    try {
      queueRate = resolveRateLimit(`queue ${queue}: rateLimit`, this.#options.queueRateLimit?.(queue));
    } catch (error) {
      this.#options.reportError(
        error,
        `the rate limit of queue ${queue} is invalid; none of its messages runs until it is fixed (they return after their VT)`,
      );
      return [];
    }
    // The common case, no limit anywhere: nothing to route or ask (the run routes each message itself).
    if (!queueRate && !this.#options.registry().hasFlowLimits()) return [...messages];
    const limited = new Map<string, Limited>();
    const invalid = new Set<string>();
    for (const message of messages) {
      const entry = this.#limitsOf(queue, message, queueRate);
      if (entry === "invalid") invalid.add(message.msgId);
      else if (entry) limited.set(message.msgId, entry);
    }
    if (limited.size === 0) return invalid.size === 0 ? [...messages] : messages.filter((message) => !invalid.has(message.msgId));
    const released = this.#releases.get(queue) ?? [];
    this.#releases.delete(queue);
    let rows: AdmitRow[];
    try {
      rows = await this.#admitStatement(queue, [...limited.values()], queueRate, released);
    } catch (error) {
      // Not admitted (or not known to be): none of them runs; they come back after their VT.
      this.#options.reportError(error, `admitting ${limited.size} limited message(s) of ${queue} failed; they return after their VT`);
      if (released.length > 0) this.#release(queue, released);
      return messages.filter((message) => !limited.has(message.msgId) && !invalid.has(message.msgId));
    }
    const verdicts = new Map(rows.map((row) => [row.msg_id, row]));
    for (const row of rows) if (row.verdict === "throttled") this.#throttled(queue, row, limited.get(row.msg_id)!);
    return messages.filter((message) => {
      if (invalid.has(message.msgId)) return false;
      const entry = limited.get(message.msgId);
      if (!entry) return true;
      if (verdicts.get(message.msgId)?.verdict !== "run") return false;
      if (entry.concurrencyKey) this.#holding.set(`${queue}:${message.msgId}`, message.readCt);
      return true;
    });
  }

  /** Runs (or claimed messages) that ended: the slots they hold are freed with the next admission of their queue, or a flush. */
  finished(queue: string, claims: readonly Claim[]): void {
    if (this.#holding.size === 0) return;
    const freed: Claim[] = [];
    for (const claim of claims) {
      const key = `${queue}:${claim.id}`;
      const readCt = this.#holding.get(key);
      if (readCt === undefined) continue;
      this.#holding.delete(key);
      freed.push({ id: claim.id, readCt });
    }
    if (freed.length > 0) this.#release(queue, freed);
  }

  #release(queue: string, claims: readonly Claim[]): void {
    const pending = this.#releases.get(queue);
    if (pending) pending.push(...claims);
    else this.#releases.set(queue, [...claims]);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    this.#options.followUps.begin();
    setTimeout(() => void this.#flush().finally(() => this.#options.followUps.end()), RELEASE_FLUSH_MS);
  }

  stop(): void {
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
  }

  #limitsOf(queue: string, message: ClaimedMessage, queueRate: RateLimit | undefined): Limited | "invalid" | null {
    const routed = this.#options.routeMessage(queue, message.message);
    message.routed = routed; // routed once: the run reads it from here
    const definition = routed ? this.#options.registry().get(routed.job) : undefined;
    const concurrency = definition?.concurrency;
    const rate = definition?.rateLimit;
    if (!routed || !definition || (!concurrency && !rate && !queueRate)) return null;
    const concurrencyKey = concurrency ? limitKey(definition.name, "concurrency", concurrency.key, routed.payload) : null;
    const rateKey = rate ? limitKey(definition.name, "rateLimit", rate.key, routed.payload) : null;
    for (const key of [concurrencyKey, rateKey]) {
      if (key !== null && typeof key !== "string") {
        this.#options.onInvalidKey(queue, message, definition.name, key);
        return "invalid";
      }
    }
    return {
      message,
      concurrencyKey: concurrencyKey as string | null,
      concurrency,
      rateKey: rateKey === null ? null : `job:${rateKey as string}`,
      rate,
      holdsQueue: rate !== undefined && rate.key === undefined,
    };
  }

  #admitStatement(queue: string, limited: Limited[], queueRate: RateLimit | undefined, released: readonly Claim[]): Promise<AdmitRow[]> {
    const column = <T>(pick: (entry: Limited) => T): T[] => limited.map(pick);
    return runStatement<AdmitRow>(this.#options.db, true, ADMIT, [
      queue,
      ...claimArrays(column((entry) => ({ id: entry.message.msgId, readCt: entry.message.readCt }))),
      column((entry) => entry.concurrencyKey),
      column((entry) => entry.concurrency?.limit ?? null),
      column((entry) => entry.concurrency?.onLimit === "discard"),
      column((entry) => entry.rateKey),
      column((entry) => entry.rate?.limit ?? null),
      column((entry) => entry.rate?.intervalMs ?? null),
      queueRate ? `queue:${queue}` : null,
      queueRate?.limit ?? null,
      queueRate?.intervalMs ?? null,
      PARK_SECONDS,
      ...claimArrays(released),
      this.#options.holder,
    ]);
  }

  /** A keyless rate limit is exhausted: skip the queue until it may start again, then wake the worker. */
  #throttled(queue: string, row: AdmitRow, entry: Limited): void {
    if (row.limited_by === "job" && !entry.holdsQueue) return; // only that key waits (its message's VT)
    const waitMs = Math.max(1, Math.ceil(row.wait_ms ?? 1));
    const until = Date.now() + waitMs;
    if ((this.#heldUntil.get(queue) ?? 0) >= until) return;
    this.#heldUntil.set(queue, until);
    clearTimeout(this.#timers.get(queue));
    const timer = setTimeout(() => {
      this.#timers.delete(queue);
      this.#options.onReady();
    }, waitMs);
    timer.unref();
    this.#timers.set(queue, timer);
  }

  async #flush(): Promise<void> {
    this.#flushScheduled = false;
    const batch = this.#releases;
    this.#releases = new Map();
    await Promise.all(
      [...batch].map(([queue, claims]) =>
        runStatement(this.#options.db, true, RELEASE_SLOTS, [queue, ...claimArrays(claims)]).catch((error: unknown) =>
          this.#options.reportError(
            error,
            `freeing ${claims.length} concurrency slot(s) of ${queue} failed; they free themselves once their messages settle, and the maintenance sweep wakes their waiters`,
          ),
        ),
      ),
    );
  }
}
