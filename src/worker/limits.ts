import { createHash, randomUUID } from "node:crypto";
import { type Queryable, runStatement } from "../db/queryable.ts";
import type { ConcurrencyLimit } from "../jobs/limits.ts";
import { type RateLimit, limitKey, resolveRateLimit } from "../jobs/limits.ts";
import type { FailedOutcome } from "../jobs/outcome.ts";
import type { JobRegistry } from "../jobs/registry.ts";
import { ADMIT_LEASED, LIMIT_WAIT_PREFIX, RENEW_LEASES } from "../queue/limits-sql.ts";
import type { QueueRateLimit, RoutedMessage } from "./options.ts";
import type { PendingWork } from "./pending-work.ts";
import type { Claim, ClaimedMessage } from "./worker-store.ts";

/**
 * How long a parked message stays invisible when nothing wakes it: a backstop only. A
 * waiter is normally woken by the unit a run of its key gives back (in the same
 * transaction) or by the maintenance role's sweep; this bounds the wait if both were lost.
 */
export const PARK_SECONDS = 300;

/**
 * How long units to give back wait for an admission to carry them before they are sent on
 * their own: under load an admission comes within a few ms and saves the statement; at
 * rest a waiter is handed its unit this much later.
 */
const RELEASE_FLUSH_MS = 2;

/** Spare units of a key none of this worker's runs has used for this long go back. */
const IDLE_RETURN_MS = 1_000;

/**
 * Reserved rate starts are admitted within this share of the interval, or dropped; an
 * admitted message must start within START_DEADLINE of the reservation, or it goes back
 * unstarted. A start is recorded when it is reserved, and the window's spare sub-window (a
 * twentieth of the interval, migration pgbus/0012) covers the delay to the real start.
 */
const RESERVATION_LIFETIME = 1 / 40;
const START_DEADLINE = 1 / 20;
/** Never less time than this to start (a very short interval's twentieth is less than a round trip). */
const MIN_START_DEADLINE_MS = 10;

const NO_DEADLINES: ReadonlyMap<string, number> = new Map();

/** The pool's recent rate of freed slots decays over about this long. */
const TURNOVER_WINDOW_MS = 1_000;

/**
 * Starts reserved ahead: this many per start the claim needs, and at least RESERVE_AHEAD_MIN
 * (small claims come often); granted only while the window has plenty of room (migration
 * pgbus/0020: never more than a sixteenth of what it has left).
 */
const RESERVE_AHEAD = 8;
const RESERVE_AHEAD_MIN = 64;

type Verdict = "run" | "parked" | "discarded" | "throttled";

interface AdmitResult {
  leased: number[];
  waiting: boolean[];
  reserved: number[];
  verdicts: Verdict[];
  waits: Array<number | null>;
  limited: Array<"queue" | "job" | null>;
  recorded_ms: number | null;
}

/** This worker's lease of one concurrency key (a row of pgbus.concurrency_leases). */
interface KeyLease {
  readonly key: string;
  /** md5 of the key: how a NOTIFY names it. */
  readonly hash: string;
  limit: number;
  /** onLimit "discard": held follows the runs exactly, so a discard sees only real runs, never spare units. */
  exact: boolean;
  /** Units the database counts for this worker. */
  held: number;
  /** Units given to runs (or admitted messages) that have not ended. */
  inUse: number;
  /** Messages wait for this key: every unit a run frees goes back at once (to the oldest waiter). */
  waited: boolean;
  /** When inUse last dropped to 0 (performance.now()). */
  idleSince: number;
}

/** Starts of one rate key reserved by this worker and not used yet, oldest batch first. */
interface RateReservation {
  readonly key: string;
  limit: number;
  intervalMs: number;
  batches: Array<{ left: number; reservedAt: number }>;
}

export interface Admission {
  /** The messages that may run, in claim order. */
  run: ClaimedMessage[];
  /** The last moment (performance.now()) each rate-limited one of them may start, by message id. */
  startBy: ReadonlyMap<string, number>;
  /** Rate-limited messages that could not start at once: to be given back unstarted, claimed again when a slot is free. */
  deferred: ClaimedMessage[];
}

/** One claimed message's limits. */
interface Limited {
  message: ClaimedMessage;
  lease: KeyLease | null;
  jobRate: RateReservation | null;
  queueRate: RateReservation | null;
  discard: boolean;
  /** A throttle by the job's limit holds the whole queue (no key splits it). */
  holdsQueue: boolean;
  /** Set when admitted with a rate start: the last moment it may start. */
  startBy: number;
}

export interface LimitGateOptions {
  db: Queryable;
  registry: () => JobRegistry;
  routeMessage: (queue: string, message: unknown) => RoutedMessage | null;
  /** A queue's own rate limit (the config file's `queues.<name>.rateLimit`). */
  queueRateLimit: ((queue: string) => QueueRateLimit | undefined) | undefined;
  /** The pgbus.processes row whose disappearance frees this worker's units at once (null: only their time to live does). */
  processId: string | null;
  /** The leases' time to live (s), renewed while the worker lives: the worker's VT. */
  leaseSeconds: number;
  /** A throttled queue may start again: claim from it. */
  onReady: () => void;
  /** A message whose limit key cannot be computed: dead-letter it with this outcome. */
  onInvalidKey: (queue: string, message: ClaimedMessage, job: string, outcome: FailedOutcome) => void;
  reportError: (error: unknown, context: string) => void;
  /** Lease statements are counted here until done, so the worker's stop waits for them. */
  followUps: PendingWork;
}

/**
 * The worker's side of flow limits. The worker holds a counted lease per concurrency key
 * (units of the key's limit, shared with the other workers through
 * pgbus.concurrency_leases) and starts reserved ahead per rate key, and admits the
 * messages of a claim against them in memory: the database is asked only when a key needs
 * more than the worker holds (one statement for the whole claim, pgbus.admit_leased,
 * which also parks, discards or throttles what does not fit). While nobody waits for a
 * key, a run that ends keeps its unit for the next message of the key (asking for
 * twice what a claim needs lets the lease grow with the load); units unused for a second
 * go back. Once messages wait for a key (the worker parked some, or another worker's
 * NOTIFY says so), every unit a run frees goes back at once, to the oldest waiter.
 *
 * A queue throttled by a keyless rate limit is skipped by the claim until it may start
 * again, so the worker's capacity goes to its other queues meanwhile, and a timer wakes
 * the worker then (the throttled messages' return is a VT change, which notifies no one).
 */
export class LimitGate {
  readonly #options: LimitGateOptions;
  /** Identifies this worker's leases. */
  readonly #holder = randomUUID();
  readonly #leases = new Map<string, KeyLease>();
  readonly #reservations = new Map<string, RateReservation>();
  /** Admitted messages holding a unit: queue:msgId -> its lease. */
  readonly #holding = new Map<string, KeyLease>();
  /** Leases whose held count must be sent (units to give back). */
  #dirty = new Set<KeyLease>();
  #flushScheduled = false;
  /** Lease statements run one at a time: each sets absolute counts computed from the one before. */
  #chain: Promise<unknown> = Promise.resolve();
  readonly #heldUntil = new Map<string, number>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  /** Queues whose messages have met a rate limit, with the shortest time to start they gave. */
  readonly #rateDeadlines = new Map<string, number>();
  /** Pool slots freed per ms, decaying (TURNOVER_WINDOW_MS), as of #turnoverAt. */
  #turnover = 0;
  #turnoverAt = 0;
  /** A rate-limited queue was passed over (or cut short) for want of a free slot: claim again when one frees. */
  #slotWanted = false;
  #upkeep: NodeJS.Timeout | undefined;
  #lastRenewal = 0;
  #stopped = false;

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

  /**
   * How many of `asked` messages to claim from `queue` when `startable` pool slots are free
   * and not spoken for. A queue with a rate limit is claimed no further than what can start
   * before its counted starts lapse (see #startableBy): an admitted message must not wait
   * for a slot past that.
   */
  claimSize(queue: string, asked: number, startable: number): number {
    const room = this.#startableBy(queue, startable);
    if (room >= asked) return asked;
    this.#slotWanted = true;
    return Math.max(0, room);
  }

  /** A pool slot freed. Returns whether a rate-limited queue waits for one (and forgets it: the caller claims now). */
  slotFreed(): boolean {
    const now = performance.now();
    this.#turnover = this.#turnoverAt === 0 ? 0 : this.#turnoverNow(now);
    this.#turnover += 1 / TURNOVER_WINDOW_MS;
    this.#turnoverAt = now;
    const wanted = this.#slotWanted;
    this.#slotWanted = false;
    return wanted;
  }

  #turnoverNow(now: number): number {
    return this.#turnover * Math.exp(-(now - this.#turnoverAt) / TURNOVER_WINDOW_MS);
  }

  /**
   * How many messages of `queue` may be admitted now, `startable` slots being free: with a
   * rate limit, those plus half of what the pool's recent turnover frees before the queue's
   * shortest time to start runs out (a worker of short jobs still claims ahead; one of long
   * jobs claims only for its free slots); without, any number.
   */
  #startableBy(queue: string, startable: number): number {
    const queueRate = this.#options.queueRateLimit?.(queue);
    const deadline = Math.min(
      this.#rateDeadlines.get(queue) ?? Infinity,
      queueRate && Number.isFinite(queueRate.intervalMs) ? startDeadlineMs(queueRate.intervalMs) : Infinity,
    );
    if (deadline === Infinity) return Infinity;
    return startable + Math.floor((this.#turnoverNow(performance.now()) * deadline) / 2);
  }

  /**
   * The claimed messages that may run now, in claim order, and the rate-limited ones that
   * could not start at once (beyond the `startable` free slots); the others are taken care
   * of in the database.
   */
  async admit(queue: string, messages: readonly ClaimedMessage[], startable: number): Promise<Admission> {
    let queueRate: RateLimit | undefined;
    try {
      queueRate = resolveRateLimit(`queue ${queue}: rateLimit`, this.#options.queueRateLimit?.(queue));
    } catch (error) {
      this.#options.reportError(
        error,
        `the rate limit of queue ${queue} is invalid; none of its messages runs until it is fixed (they return after their VT)`,
      );
      return { run: [], startBy: NO_DEADLINES, deferred: [] };
    }
    // The common case, no limit anywhere: nothing to route or ask (the run routes each message itself).
    if (!queueRate && !this.#options.registry().hasFlowLimits()) return { run: [...messages], startBy: NO_DEADLINES, deferred: [] };
    // Inside the statement queue: the leases an admission takes must not be dropped by the upkeep meanwhile.
    return this.#exclusive(async () => {
      let startableBy = this.#startableBy(queue, startable);
      const limited: Limited[] = [];
      const startBy = new Map<string, number>();
      const notNow = new Set<string>();
      const deferred: ClaimedMessage[] = [];
      messages.forEach((message, position) => {
        const entry = this.#limitsOf(queue, message, queueRate);
        if (entry === "invalid") notNow.add(message.msgId);
        else if (entry && (entry.jobRate || entry.queueRate)) {
          if (this.#noteDeadline(queue, entry)) startableBy = this.#startableBy(queue, startable);
          // The buffer starts messages in claim order: this one would wait for a slot past its time to start.
          if (position >= startableBy) {
            deferred.push(message);
            notNow.add(message.msgId);
          } else limited.push(entry);
        } else if (entry) limited.push(entry);
      });
      if (deferred.length > 0) this.#slotWanted = true;
      if (limited.length > 0) {
        for (const id of await this.#admitLimited(queue, limited)) notNow.add(id);
        for (const entry of limited) if (entry.startBy !== Infinity) startBy.set(entry.message.msgId, entry.startBy);
      }
      return { run: messages.filter((message) => !notNow.has(message.msgId)), startBy, deferred };
    });
  }

  /** Runs (or admitted messages) that ended: their units stay for the next run of their key, or go back if someone waits. */
  finished(queue: string, claims: readonly Claim[]): void {
    if (this.#holding.size === 0) return;
    for (const claim of claims) {
      const key = `${queue}:${claim.id}`;
      const lease = this.#holding.get(key);
      if (!lease) continue;
      this.#holding.delete(key);
      if (--lease.inUse === 0) lease.idleSince = performance.now();
      if (lease.waited || lease.exact) this.#giveBack(lease);
    }
  }

  /** A NOTIFY payload: `limit:<md5 of a key>` says messages wait for that key. Returns whether it was one. */
  notified(payload: string): boolean {
    if (!payload.startsWith(LIMIT_WAIT_PREFIX)) return false;
    const hash = payload.slice(LIMIT_WAIT_PREFIX.length);
    for (const lease of this.#leases.values()) {
      if (lease.hash !== hash) continue;
      lease.waited = true;
      if (lease.held > lease.inUse) this.#giveBack(lease);
    }
    return true;
  }

  /** Stops the timers and gives every unit back: called once the worker's runs have ended or been abandoned. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    clearInterval(this.#upkeep);
    // Runs still going now were abandoned (their messages are visible again): none keeps a unit.
    this.#holding.clear();
    for (const lease of this.#leases.values()) {
      lease.inUse = 0;
      if (lease.held > 0) this.#dirty.add(lease);
    }
    if (this.#dirty.size > 0) await this.#exclusive(() => this.#flush());
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
      lease: concurrency ? this.#leaseOf(concurrencyKey as string, concurrency) : null,
      jobRate: rate ? this.#reservationOf(`job:${rateKey as string}`, rate) : null,
      queueRate: queueRate ? this.#reservationOf(`queue:${queue}`, queueRate) : null,
      discard: concurrency?.onLimit === "discard",
      holdsQueue: rate !== undefined && rate.key === undefined,
      startBy: Infinity,
    };
  }

  /** Notes the shortest time to start of `queue`'s rate limits; returns whether it shrank. */
  #noteDeadline(queue: string, entry: Limited): boolean {
    const known = this.#rateDeadlines.get(queue) ?? Infinity;
    let deadline = known;
    for (const reservation of [entry.jobRate, entry.queueRate]) {
      if (reservation) deadline = Math.min(deadline, startDeadlineMs(reservation.intervalMs));
    }
    this.#rateDeadlines.set(queue, deadline);
    return deadline < known;
  }

  #leaseOf(key: string, concurrency: ConcurrencyLimit): KeyLease {
    let lease = this.#leases.get(key);
    if (!lease) {
      lease = {
        key,
        hash: createHash("md5").update(key).digest("hex"),
        limit: concurrency.limit,
        exact: false,
        held: 0,
        inUse: 0,
        waited: false,
        idleSince: performance.now(),
      };
      this.#leases.set(key, lease);
      this.#startUpkeep();
    }
    lease.limit = concurrency.limit;
    lease.exact = concurrency.onLimit === "discard";
    return lease;
  }

  #reservationOf(key: string, rate: { limit: number; intervalMs: number }): RateReservation {
    let reservation = this.#reservations.get(key);
    if (!reservation) {
      reservation = { key, limit: rate.limit, intervalMs: rate.intervalMs, batches: [] };
      this.#reservations.set(key, reservation);
      this.#startUpkeep();
    }
    reservation.limit = rate.limit;
    reservation.intervalMs = rate.intervalMs;
    return reservation;
  }

  /** Admits what the leases and reservations cover in memory, the rest through the database. Returns the ids that do not run now. */
  async #admitLimited(queue: string, limited: readonly Limited[]): Promise<Set<string>> {
    const now = performance.now();
    const units = new Map<KeyLease, number>();
    const starts = new Map<RateReservation, number>();
    for (const entry of limited) {
      if (entry.lease) units.set(entry.lease, (units.get(entry.lease) ?? 0) + 1);
      for (const reservation of [entry.jobRate, entry.queueRate]) {
        if (reservation) starts.set(reservation, (starts.get(reservation) ?? 0) + 1);
      }
    }
    const covered =
      [...units].every(([lease, needed]) => lease.held - lease.inUse >= needed) &&
      [...starts].every(([reservation, needed]) => usable(reservation, now) >= needed);
    if (covered) {
      for (const entry of limited) this.#take(queue, entry);
      return new Set();
    }
    return this.#ask(queue, limited, units, starts, now);
  }

  /** An admitted message takes its unit and its starts, and must start by the deadline of the oldest. */
  #take(queue: string, entry: Limited): void {
    if (entry.lease) {
      entry.lease.inUse++;
      this.#holding.set(`${queue}:${entry.message.msgId}`, entry.lease);
    }
    for (const reservation of [entry.jobRate, entry.queueRate]) {
      if (reservation) entry.startBy = Math.min(entry.startBy, takeStart(reservation));
    }
  }

  async #ask(
    queue: string,
    limited: readonly Limited[],
    units: Map<KeyLease, number>,
    starts: Map<RateReservation, number>,
    now: number,
  ): Promise<Set<string>> {
    const leases = [...new Set([...units.keys(), ...this.#dirty])];
    this.#dirty = new Set();
    // A lease only sent to give units back asks for what its runs use.
    const wanted = leases.map((lease) => (units.has(lease) ? this.#wanted(lease, units.get(lease)!) : lease.inUse));
    const reservations = [...starts.keys()];
    const local = reservations.map((reservation) => usable(reservation, now));
    const reserve = reservations.map((reservation, i) => Math.max(0, starts.get(reservation)! - local[i]!));
    const leaseIndex = new Map(leases.map((lease, i) => [lease, i + 1]));
    const rateIndex = new Map(reservations.map((reservation, i) => [reservation, i + 1]));
    let result: AdmitResult;
    try {
      result = await this.#statement(queue, {
        leases,
        wanted,
        reservations,
        local,
        reserve,
        ahead: reservations.map((reservation, i) =>
          reserve[i]! > 0 ? Math.max(starts.get(reservation)! * RESERVE_AHEAD, RESERVE_AHEAD_MIN) : 0,
        ),
        messages: limited,
        leaseIndex,
        rateIndex,
      });
    } catch (error) {
      // Not admitted (or not known to be): none of them runs; they come back after their VT.
      // The leases may or may not have been set: use the smaller count, and send them again
      // (the counts are absolute, so sending one twice is harmless) until the database has them.
      leases.forEach((lease, i) => {
        lease.held = Math.min(lease.held, wanted[i]!);
        this.#dirty.add(lease);
      });
      this.#options.reportError(
        error,
        limited.length > 0
          ? `admitting ${limited.length} limited message(s) of ${queue} failed; they return after their VT`
          : `giving back units of ${leases.length} concurrency key(s) failed; tried again within a second`,
      );
      return new Set(limited.map((entry) => entry.message.msgId));
    }
    leases.forEach((lease, i) => {
      lease.held = result.leased[i]!;
      lease.waited = result.waiting[i]!;
    });
    // Recorded no earlier than the send plus the time the statement spent before recording (waiting for locks).
    const recordedAt = now + (result.recorded_ms ?? 0);
    reservations.forEach((reservation, i) => {
      const reserved = result.reserved[i]!;
      if (reserved > 0) reservation.batches.push({ left: reserved, reservedAt: recordedAt });
    });
    const refused = new Set<string>();
    limited.forEach((entry, i) => {
      const verdict = result.verdicts[i];
      if (verdict === "run") return this.#take(queue, entry);
      refused.add(entry.message.msgId);
      if (verdict === "throttled") this.#throttled(queue, result.waits[i] ?? 1, result.limited[i] ?? "queue", entry);
    });
    return refused;
  }

  /**
   * The units to ask for: the runs in progress plus the new messages, and as many again
   * spare while nobody waits for the key (never fewer than it holds then); exactly what
   * runs once someone waits, or for onLimit "discard".
   */
  #wanted(lease: KeyLease, needed: number): number {
    const exact = lease.inUse + needed;
    if (lease.waited || lease.exact) return exact;
    return Math.min(lease.limit, Math.max(lease.held, exact + needed));
  }

  #statement(
    queue: string,
    ask: {
      leases: readonly KeyLease[];
      wanted: readonly number[];
      reservations: readonly RateReservation[];
      local: readonly number[];
      reserve: readonly number[];
      ahead: readonly number[];
      messages: readonly Limited[];
      leaseIndex: Map<KeyLease, number>;
      rateIndex: Map<RateReservation, number>;
    },
  ): Promise<AdmitResult> {
    const { leases, reservations, messages } = ask;
    const indexOf = <T>(index: Map<T, number>, item: T | null): number | null => (item ? index.get(item)! : null);
    return runStatement<AdmitResult>(this.#options.db, true, ADMIT_LEASED, [
      queue,
      this.#holder,
      this.#options.processId,
      this.#options.leaseSeconds,
      PARK_SECONDS,
      leases.map((lease) => lease.key),
      leases.map((lease) => lease.limit),
      leases.map((lease) => lease.inUse),
      ask.wanted,
      reservations.map((reservation) => reservation.key),
      reservations.map((reservation) => reservation.limit),
      reservations.map((reservation) => reservation.intervalMs),
      ask.local,
      ask.reserve,
      ask.ahead,
      messages.map((entry) => entry.message.msgId),
      messages.map((entry) => entry.message.readCt),
      messages.map((entry) => indexOf(ask.leaseIndex, entry.lease)),
      messages.map((entry) => indexOf(ask.rateIndex, entry.jobRate)),
      messages.map((entry) => indexOf(ask.rateIndex, entry.queueRate)),
      messages.map((entry) => entry.discard),
    ]).then((rows) => rows[0]!);
  }

  /** Units of `lease` go back to the database soon (with the next admission, or on their own within RELEASE_FLUSH_MS). */
  #giveBack(lease: KeyLease): void {
    this.#dirty.add(lease);
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#stopped) return;
    this.#flushScheduled = true;
    this.#options.followUps.begin();
    setTimeout(() => {
      this.#flushScheduled = false;
      void this.#exclusive(() => this.#flush()).finally(() => this.#options.followUps.end());
    }, RELEASE_FLUSH_MS);
  }

  /** Sends the held counts of the dirty leases (no messages). */
  async #flush(): Promise<void> {
    if (this.#dirty.size > 0) await this.#ask("", [], new Map(), new Map(), performance.now());
  }

  /** Runs lease statements one at a time, in call order. */
  #exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(work);
    this.#chain = run.catch(() => undefined);
    return run;
  }

  /**
   * Once a second while the worker holds units or reservations: spare units of keys it has
   * not used for IDLE_RETURN_MS go back, expired reservations are dropped, and the leases
   * are renewed (every third of their time to live, at most every 5 s).
   */
  #startUpkeep(): void {
    if (this.#upkeep || this.#stopped) return;
    this.#lastRenewal = Date.now(); // a lease is written with its full time to live
    this.#upkeep = setInterval(() => {
      // In the statement queue, so no admission holds a lease or reservation dropped here.
      this.#options.followUps.track(
        this.#exclusive(async () => {
          const now = performance.now();
          for (const [key, reservation] of this.#reservations) if (usable(reservation, now) === 0) this.#reservations.delete(key);
          for (const [key, lease] of this.#leases) {
            if (lease.inUse > 0 || now - lease.idleSince < IDLE_RETURN_MS) continue;
            if (lease.held > 0) this.#dirty.add(lease);
            else if (!this.#dirty.has(lease)) this.#leases.delete(key);
          }
          if (this.#dirty.size > 0) this.#scheduleFlush();
          if (Date.now() - this.#lastRenewal >= Math.min(5, this.#options.leaseSeconds / 3) * 1_000) await this.#renew();
        }),
      );
    }, IDLE_RETURN_MS);
    this.#upkeep.unref();
  }

  /** Renews the leases; a key others wait for gives back its spare units, a lease taken as dead is asked for again. */
  async #renew(): Promise<void> {
    this.#lastRenewal = Date.now();
    if (![...this.#leases.values()].some((lease) => lease.held > 0)) return;
    let rows: Array<{ sem_key: string; waiting: boolean }>;
    try {
      rows = await runStatement(this.#options.db, true, RENEW_LEASES, [this.#holder, this.#options.leaseSeconds]);
    } catch (error) {
      this.#options.reportError(error, "renewing the worker's concurrency leases failed; tried again within 5 s");
      return;
    }
    const kept = new Map(rows.map((row) => [row.sem_key, row.waiting]));
    for (const lease of this.#leases.values()) {
      const waiting = kept.get(lease.key);
      if (waiting === undefined) {
        lease.held = 0; // taken as dead (the worker was frozen past its time to live): the next admission asks again
        continue;
      }
      lease.waited = waiting;
      if (waiting && lease.held > lease.inUse) this.#giveBack(lease);
    }
  }

  /** A keyless rate limit is exhausted: skip the queue until it may start again, then wake the worker. */
  #throttled(queue: string, waitMs: number, limitedBy: "queue" | "job", entry: Limited): void {
    if (limitedBy === "job" && !entry.holdsQueue) return; // only that key waits (its message's VT)
    const wait = Math.max(1, Math.ceil(waitMs));
    const until = Date.now() + wait;
    if ((this.#heldUntil.get(queue) ?? 0) >= until) return;
    this.#heldUntil.set(queue, until);
    clearTimeout(this.#timers.get(queue));
    const timer = setTimeout(() => {
      this.#timers.delete(queue);
      this.#options.onReady();
    }, wait);
    timer.unref();
    this.#timers.set(queue, timer);
  }
}

/** Starts of `reservation` still admissible at `now`; expired batches are dropped. */
function usable(reservation: RateReservation, now: number): number {
  const lifetime = reservation.intervalMs * RESERVATION_LIFETIME;
  reservation.batches = reservation.batches.filter((batch) => batch.left > 0 && batch.reservedAt + lifetime > now);
  return reservation.batches.reduce((sum, batch) => sum + batch.left, 0);
}

/** Takes one start from the oldest batch (one the caller found usable); returns the moment it must start by. */
function takeStart(reservation: RateReservation): number {
  const batch = reservation.batches[0]!;
  if (--batch.left === 0) reservation.batches.shift();
  return batch.reservedAt + startDeadlineMs(reservation.intervalMs);
}

/** How long after its start was counted an admitted message of a rate limit of `intervalMs` may start. */
function startDeadlineMs(intervalMs: number): number {
  return Math.max(intervalMs * START_DEADLINE, MIN_START_DEADLINE_MS);
}
