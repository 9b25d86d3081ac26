import { randomUUID } from "node:crypto";
import type pg from "pg";
import { type ErrorRecord, ValidationError, toErrorRecord } from "../errors.ts";
import { Listener } from "../db/listener.ts";
import { isUndefinedTable } from "../db/pg-errors.ts";
import { backoffDelayMs } from "../jobs/backoff.ts";
import type { JobDefinition } from "../jobs/define.ts";
import { type JobRegistry, loadJobsModule } from "../jobs/registry.ts";
import type { Logger } from "../logger.ts";
import type { SafeEmitter } from "../observability/emitter.ts";
import type { JobRef, WorkerEvents } from "../observability/events.ts";
import { createExecutionPool } from "../pools/create.ts";
import type { ExecutionMode, ExecutionPool, JobOutcome } from "../pools/types.ts";
import { validateQueueName } from "../queue/names.ts";
import { Acker } from "./acker.ts";
import { PendingWork } from "./pending-work.ts";
import { VisibilityExtender } from "./visibility-extender.ts";
import { Wakeup } from "./wakeup.ts";
import { type AckMode, type ClaimedMessage, type WorkerStore, createWorkerStore } from "./worker-store.ts";

export const NOTIFY_CHANNEL = "pgbus_queue";
const MISSING_QUEUE_RETRY_MS = 5_000;
/** One per claim/ack connection of the worker's pool. */
const MAX_CLAIMS_IN_FLIGHT = 2;

export interface WorkerOptions {
  /** Queues in priority order, or ["*"] for every queue (re-resolved as queues appear). */
  queues: string[];
  /** With "*": queues that other workers own. */
  excludeQueues?: string[];
  /** Jobs run at once. Default 10. */
  capacity?: number;
  /** "async" (alias "fiber") or "threads". Default "async". */
  executionMode?: string;
  /** Module exporting the jobs; required in threads mode (each thread loads it). */
  jobsModule?: string;
  /** Seconds a claimed message stays invisible; extended while the job runs. Default 30. */
  visibilityTimeoutSec?: number;
  /**
   * Messages claimed ahead of free slots, so the next job starts the moment a slot frees
   * instead of after a claim round trip. Bounded: a worker holds at most capacity +
   * prefetch messages (their VT is extended like running ones). Default: capacity.
   */
  prefetch?: number;
  /** Backstop poll when no notification arrives. Default 1000 ms. */
  pollIntervalMs?: number;
  /** What happens to a message whose job succeeded. Default "archive". */
  ackMode?: AckMode | ((queue: string) => AckMode);
  /** How long stop() waits for in-flight jobs before aborting them. Default 25,000 ms. */
  shutdownTimeoutMs?: number;
  /** Async mode: warn when a handler blocks the event loop this long. Default 200 ms. */
  blockedLoopThresholdMs?: number;
  /** Threads mode: number of threads. */
  threads?: number;
  /**
   * Which job a message is for. Default: the `{ job, payload }` body that enqueue writes.
   * Event consumers route every message of a subscriber's queue to its handler instead.
   * Return null for a message no job can run (it goes to the DLQ as invalid_message).
   */
  routeMessage?: (queue: string, message: unknown) => RoutedMessage | null;
}

export interface RoutedMessage {
  job: string;
  payload: unknown;
}

/** Reads the `{ job, payload }` body that Pgbus.enqueue writes. */
export function routeJobMessage(_queue: string, message: unknown): RoutedMessage | null {
  const body = message as { job?: unknown; payload?: unknown } | null;
  return body && typeof body === "object" && typeof body.job === "string" ? { job: body.job, payload: body.payload } : null;
}

export interface WorkerDependencies {
  /** Claim/ack connections: a small pool of the worker's own. */
  db: pg.Pool;
  /** For the dedicated LISTEN connection. */
  clientConfig: pg.ClientConfig;
  registry: JobRegistry;
  logger: Logger;
  emitter: SafeEmitter<WorkerEvents>;
  /** Called once the worker has stopped, e.g. to close the pool it was given. */
  onStopped?: () => Promise<void>;
  /**
   * Replaces the default store over `db`: the event consumer's skips events an idempotent
   * subscriber already handled and records handled events in the ack statement.
   */
  store?: WorkerStore;
}

export interface WorkerStats {
  processed: number;
  failed: number;
  retried: number;
  deadLettered: number;
  busy: number;
  capacity: number;
  executionMode: ExecutionMode;
}

interface InFlightRun extends JobRef {
  startedAt: number;
  abandoned: boolean;
}

type State = "idle" | "running" | "stopping" | "stopped";

/**
 * Claims messages from its queues and runs them in an execution pool. Reads as many as
 * the pool has free slots, wakes on NOTIFY and on every completion (polling only as a
 * backstop), acks in batches, retries with backoff, dead-letters after maxRetries, and
 * keeps the VT of in-flight messages extended while it lives.
 */
export class Worker {
  readonly id = randomUUID();
  readonly #options: Required<Omit<WorkerOptions, "jobsModule" | "threads" | "ackMode" | "prefetch">> &
    Pick<WorkerOptions, "jobsModule" | "threads">;
  readonly #prefetch: number;
  /** Claimed, not yet handed to the pool: oldest first. */
  readonly #buffer: Array<{ queue: string; message: ClaimedMessage }> = [];
  readonly #ackModeFor: (queue: string) => AckMode;
  readonly #deps: WorkerDependencies;
  readonly #store: WorkerStore;
  readonly #inFlight = new Map<string, InFlightRun>();
  readonly #followUps = new PendingWork();
  readonly #stats = { processed: 0, failed: 0, retried: 0, deadLettered: 0 };
  #registry: JobRegistry;
  #pool: ExecutionPool | null = null;
  #listener: Listener | null = null;
  #acker: Acker;
  #extender: VisibilityExtender;
  #state: State = "idle";
  #queues: string[] = [];
  #maybeMore = true;
  readonly #wakeup = new Wakeup();
  /** Claims under way, and the room they reserved. */
  readonly #claimsInFlight = new Set<Promise<void>>();
  #reserved = 0;
  #lastClaimFull = false;
  #claimBackoffUntil = 0;
  /** Queues whose table is gone, with when to try them again. */
  readonly #missingQueues = new Map<string, number>();
  #loopDone: Promise<void> = Promise.resolve();
  #stopPromise: Promise<void> | null = null;
  #databaseDown = false;
  #lastQueueRefresh = 0;

  constructor(options: WorkerOptions, deps: WorkerDependencies) {
    if (!Array.isArray(options.queues) || options.queues.length === 0) {
      throw new ValidationError(
        "INVALID_OPTION",
        `worker queues must be a non-empty list of queue names or ["*"], got ${JSON.stringify(options.queues)}`,
      );
    }
    for (const queue of options.queues) if (queue !== "*") validateQueueName(queue);
    const ackMode = options.ackMode ?? "archive";
    this.#ackModeFor = typeof ackMode === "function" ? ackMode : () => ackMode;
    this.#options = {
      queues: options.queues,
      excludeQueues: options.excludeQueues ?? [],
      capacity: options.capacity ?? 10,
      executionMode: options.executionMode ?? "async",
      jobsModule: options.jobsModule,
      visibilityTimeoutSec: options.visibilityTimeoutSec ?? 30,
      pollIntervalMs: options.pollIntervalMs ?? 1000,
      shutdownTimeoutMs: options.shutdownTimeoutMs ?? 25_000,
      blockedLoopThresholdMs: options.blockedLoopThresholdMs ?? 200,
      threads: options.threads,
      routeMessage: options.routeMessage ?? routeJobMessage,
    };
    this.#prefetch = options.prefetch ?? this.#options.capacity;
    if (!Number.isInteger(this.#prefetch) || this.#prefetch < 0 || this.#prefetch > 1000) {
      throw new ValidationError("INVALID_OPTION", `prefetch must be an integer from 0 to 1000, got ${String(options.prefetch)}`);
    }
    this.#deps = deps;
    this.#registry = deps.registry;
    this.#store = deps.store ?? createWorkerStore(deps.db);
    this.#acker = new Acker(this.#store, this.#ackModeFor, (error, queue, ids) =>
      this.#reportError(error, `ack of ${ids.length} message(s) in ${queue} failed; they will be redelivered after their VT`),
    );
    this.#extender = new VisibilityExtender({
      store: this.#store,
      vtSeconds: this.#options.visibilityTimeoutSec,
      inFlight: () => this.#inFlightByQueue(),
      onError: (error) => this.#reportError(error, "extending the VT of in-flight messages failed"),
    });
  }

  get queues(): readonly string[] {
    return this.#queues;
  }

  stats(): WorkerStats {
    const meta = this.#pool?.metadata();
    return {
      ...this.#stats,
      busy: meta?.busy ?? 0,
      capacity: this.#options.capacity,
      executionMode: meta?.mode ?? (this.#options.executionMode === "threads" ? "threads" : "async"),
    };
  }

  /** Resolves once the pool is ready and the first claim is under way; rejects if the pool cannot start. */
  async start(): Promise<void> {
    if (this.#state !== "idle") return;
    this.#state = "running";
    try {
      if (this.#options.jobsModule && this.#registry.all().length === 0) this.#registry = await loadJobsModule(this.#options.jobsModule);
      this.#pool = await createExecutionPool({
        mode: this.#options.executionMode,
        capacity: this.#options.capacity,
        registry: this.#registry,
        jobsModule: this.#options.jobsModule,
        logger: this.#deps.logger,
        blockedLoopThresholdMs: this.#options.blockedLoopThresholdMs,
        threads: this.#options.threads,
        onStateChange: () => this.#onSlotFreed(),
      });
    } catch (error) {
      this.#state = "stopped";
      throw error;
    }
    await this.#refreshQueues(true).catch((error: unknown) => this.#databaseError(error));
    this.#listener = new Listener({
      clientConfig: this.#deps.clientConfig,
      channel: NOTIFY_CHANNEL,
      logger: this.#deps.logger,
      applicationName: "pgbus:worker:listen",
      onNotification: (queue) => this.#onNotification(queue),
      onConnected: () => this.#wake(true),
    });
    this.#extender.start();
    // Claiming starts without waiting for LISTEN: the first batch does not depend on it, and
    // once LISTEN is in place onConnected wakes the loop, so nothing sent meanwhile waits.
    this.#loopDone = this.#loop();
    await this.#listener.start();
    this.#deps.emitter.emit("worker:start", {
      workerId: this.id,
      queues: this.#queues,
      capacity: this.#options.capacity,
      executionMode: this.#pool.mode,
    });
  }

  /**
   * Stops claiming, waits for every in-flight job up to shutdownTimeoutMs, then aborts the
   * rest (their messages are made visible again at once). Idempotent.
   */
  stop(): Promise<void> {
    this.#stopPromise ??= this.#stop();
    return this.#stopPromise;
  }

  async #stop(): Promise<void> {
    if (this.#state === "idle" || this.#pool === null) {
      // Never started, or start() failed before the pool existed: nothing runs.
      this.#state = "stopped";
      await this.#deps.onStopped?.();
      return;
    }
    this.#state = "stopping";
    this.#wake(false);
    await this.#loopDone;
    await this.#releaseBuffer();
    const pool = this.#pool!;
    pool.shutdown();
    const graceful = await pool.waitForTermination(this.#options.shutdownTimeoutMs);
    let abandoned = 0;
    if (!graceful) {
      for (const run of this.#inFlight.values()) run.abandoned = true;
      abandoned = this.#inFlight.size;
      this.#deps.logger.warn(
        { abandoned, shutdownTimeoutMs: this.#options.shutdownTimeoutMs },
        "shutdown timeout: aborting in-flight jobs; their messages are released for redelivery",
      );
      await pool.kill();
    }
    await this.#followUps.whenDone();
    await this.#acker.drain();
    await this.#extender.stop();
    await this.#listener?.stop();
    if (graceful) await pool.kill(); // releases threads; nothing is in flight
    this.#state = "stopped";
    await this.#deps.onStopped?.();
    this.#deps.emitter.emit("worker:stop", { workerId: this.id, graceful, abandoned });
  }

  async #loop(): Promise<void> {
    const total = this.#options.capacity + this.#prefetch;
    // Claim only when a worthwhile batch fits (or the pool is idle), so a stream of single
    // completions does not turn into a stream of single-row claims.
    const minClaim = Math.max(1, Math.ceil(total / 4));
    // Each claim takes at most half of what the worker may hold, so while a backlog lasts
    // two claims run at once, one per connection: the database works on the next batch
    // while the last one's round trip is under way.
    const claimSize = Math.max(1, Math.ceil(total / 2));
    while (this.#state === "running") {
      this.#pump();
      const room = total - this.#pool!.metadata().busy - this.#buffer.length - this.#reserved;
      const mayLaunch =
        Date.now() >= this.#claimBackoffUntil &&
        (this.#claimsInFlight.size === 0 || (this.#claimsInFlight.size < MAX_CLAIMS_IN_FLIGHT && this.#lastClaimFull));
      if (mayLaunch && room > 0 && (room >= minClaim || (this.#pool!.isIdle() && this.#reserved === 0)) && this.#maybeMoreOrPollDue()) {
        this.#launchClaim(Math.min(room, claimSize));
        continue;
      }
      const backoffLeft = this.#claimBackoffUntil - Date.now();
      await this.#sleep(backoffLeft > 0 ? Math.min(backoffLeft, this.#options.pollIntervalMs) : this.#options.pollIntervalMs);
    }
    await Promise.all(this.#claimsInFlight);
  }

  /** Runs one claim without blocking the loop; its room stays reserved until it returns. */
  #launchClaim(size: number): void {
    this.#reserved += size;
    const claim = this.#claimBatch(size).finally(() => {
      this.#reserved -= size;
      this.#claimsInFlight.delete(claim);
      this.#wake(false);
    });
    this.#claimsInFlight.add(claim);
  }

  async #claimBatch(size: number): Promise<void> {
    try {
      await this.#refreshQueues(false);
      const claimed = await this.#claim(size);
      this.#lastClaimFull = claimed === size;
      this.#maybeMore = this.#lastClaimFull;
      this.#databaseBack();
    } catch (error) {
      this.#lastClaimFull = false;
      this.#databaseError(error);
      this.#claimBackoffUntil = Date.now() + Math.min(5_000, this.#options.pollIntervalMs * 2);
    }
  }

  /**
   * Claims up to `wanted` messages across the queues, in priority order, into the buffer.
   * One queue failing does not starve the others: a dropped queue is skipped (and looked
   * for again later); the claim as a whole fails only when every queue tried failed.
   */
  async #claim(wanted: number): Promise<number> {
    let claimed = 0;
    let tried = 0;
    let failures = 0;
    let lastError: unknown;
    for (const queue of this.#queues) {
      if (this.#state !== "running" || claimed >= wanted) break;
      if ((this.#missingQueues.get(queue) ?? 0) > Date.now()) continue;
      tried++;
      const acks = this.#acker.take(queue);
      let messages: ClaimedMessage[];
      try {
        messages = await this.#store.claim(queue, this.#options.visibilityTimeoutSec, wanted - claimed, acks);
      } catch (error) {
        for (const id of acks?.ids ?? []) this.#acker.add(queue, id); // not acked: try again with the next flush
        if (isUndefinedTable(error)) this.#queueMissing(queue, error);
        else {
          failures++;
          lastError = error;
        }
        continue;
      }
      if (this.#missingQueues.delete(queue)) this.#deps.logger.info({ workerId: this.id, queue }, "queue is back; claiming from it again");
      for (const message of messages) {
        // Already running here: its VT lapsed (a stalled loop or database) and this worker
        // got it back. The run under way goes on; a second copy must not start.
        if (!this.#inFlight.has(`${queue}:${message.msgId}`)) this.#buffer.push({ queue, message });
      }
      claimed += messages.length;
      this.#pump();
    }
    if (tried > 0 && failures === tried) throw lastError;
    return claimed;
  }

  /** Logged once per queue; the queue is tried again after a while in case it is recreated. */
  #queueMissing(queue: string, error: unknown): void {
    if (!this.#missingQueues.has(queue))
      this.#reportError(
        error,
        `queue ${queue} no longer exists (dropped?); skipping it and checking again every ${MISSING_QUEUE_RETRY_MS / 1000} s`,
      );
    this.#missingQueues.set(queue, Date.now() + MISSING_QUEUE_RETRY_MS);
  }

  /** Hands buffered messages to the pool while it has free slots. */
  #pump(): void {
    while (this.#buffer.length > 0 && this.#pool!.availableCapacity() > 0) {
      const next = this.#buffer.shift()!;
      this.#dispatch(next.queue, next.message);
    }
  }

  #dispatch(queue: string, message: ClaimedMessage): void {
    const routed = this.#options.routeMessage(queue, message.message);
    const jobName = routed?.job ?? null;
    const ref: JobRef = { queue, messageId: message.msgId, job: jobName ?? "(invalid message)", attempt: message.readCt };
    if (routed === null || jobName === null) {
      this.#followUps.track(
        this.#deadLetter(
          ref,
          {
            name: "InvalidMessageError",
            message: `message is not a pgbus job: expected {"job": string, "payload": ...}, got ${JSON.stringify(message.message)?.slice(0, 200)}`,
          },
          "invalid_message",
        ),
      );
      return;
    }
    const definition = this.#registry.get(jobName);
    if (!definition) {
      this.#followUps.track(
        this.#deadLetter(
          ref,
          { name: "UnknownJobError", message: `no job named ${JSON.stringify(jobName)} is registered in this worker` },
          "unknown_job",
        ),
      );
      return;
    }
    const run: InFlightRun = {
      queue,
      messageId: message.msgId,
      job: jobName,
      attempt: message.readCt,
      startedAt: performance.now(),
      abandoned: false,
    };
    this.#inFlight.set(`${queue}:${message.msgId}`, run);
    if (this.#deps.emitter.has("job:start")) this.#deps.emitter.emit("job:start", ref);
    const signal = definition.timeoutMs ? AbortSignal.timeout(definition.timeoutMs) : undefined;
    let outcome: Promise<JobOutcome>;
    try {
      outcome = this.#pool!.post(
        { job: jobName, payload: routed.payload, messageId: message.msgId, attempt: message.readCt, queue },
        { signal },
      );
    } catch (error) {
      outcome = Promise.resolve({ ok: false, error: toErrorRecord(error) });
      run.abandoned = true; // not run at all: give the message back rather than count a failure
    }
    this.#followUps.begin();
    void outcome.then((result) => {
      const followUp = this.#settle(run, definition, result);
      if (followUp) this.#followUps.track(followUp);
      this.#followUps.end();
    });
  }

  /** A success only joins the next ack batch (no promise); anything else needs a statement. */
  #settle(run: InFlightRun, definition: JobDefinition, outcome: JobOutcome): Promise<void> | undefined {
    this.#inFlight.delete(`${run.queue}:${run.messageId}`);
    if (run.abandoned) {
      return this.#store
        .release(run.queue, [run.messageId])
        .catch((error: unknown) => this.#reportError(error, "releasing an aborted job failed; it returns after its VT"));
    }
    if (!outcome.ok) return this.#settleFailure(run, definition, outcome);
    this.#stats.processed++;
    this.#acker.add(run.queue, run.messageId);
    if (this.#deps.emitter.has("job:success")) {
      this.#deps.emitter.emit("job:success", {
        queue: run.queue,
        messageId: run.messageId,
        job: run.job,
        attempt: run.attempt,
        durationMs: performance.now() - run.startedAt,
      });
    }
    return undefined;
  }

  async #settleFailure(run: InFlightRun, definition: JobDefinition, outcome: Extract<JobOutcome, { ok: false }>): Promise<void> {
    const ref: JobRef = { queue: run.queue, messageId: run.messageId, job: run.job, attempt: run.attempt };
    const durationMs = performance.now() - run.startedAt;
    this.#stats.failed++;
    const exhausted = run.attempt > definition.maxRetries;
    const retryInMs = outcome.permanent || exhausted ? null : backoffDelayMs(definition.backoff, run.attempt);
    this.#deps.emitter.emit("job:failure", { ...ref, error: outcome.error, durationMs, retryInMs });
    if (retryInMs === null) {
      const reason = outcome.error.name === "UnknownJobError" ? "unknown_job" : outcome.permanent ? "invalid_payload" : "retries_exhausted";
      await this.#deadLetter(ref, outcome.error, reason);
      return;
    }
    this.#stats.retried++;
    await this.#store
      .retry(run.queue, run.messageId, retryInMs, outcome.error)
      .catch((error: unknown) => this.#reportError(error, "scheduling a retry failed; the job returns after its VT"));
  }

  async #deadLetter(ref: JobRef, error: ErrorRecord, reason: WorkerEvents["job:dead"]["reason"]): Promise<void> {
    try {
      await this.#store.deadLetter(ref.queue, ref.messageId, { ...error, reason });
      this.#stats.deadLettered++;
      this.#deps.emitter.emit("job:dead", { ...ref, error, reason });
    } catch (failure) {
      this.#reportError(failure, `moving message ${ref.messageId} of ${ref.queue} to the DLQ failed; it returns after its VT`);
    }
  }

  /** Claimed messages that never started go back at once, not after their VT. */
  async #releaseBuffer(): Promise<void> {
    const buffered = this.#buffer.splice(0);
    const byQueue = new Map<string, string[]>();
    for (const { queue, message } of buffered) byQueue.set(queue, [...(byQueue.get(queue) ?? []), message.msgId]);
    for (const [queue, ids] of byQueue) {
      await this.#store
        .release(queue, ids)
        .catch((error: unknown) => this.#reportError(error, "releasing prefetched messages failed; they return after their VT"));
    }
  }

  /** Running and buffered messages by queue: everything whose VT this worker must keep extending. */
  #inFlightByQueue(): Map<string, string[]> {
    const byQueue = new Map<string, string[]>();
    const add = (queue: string, id: string): void => {
      const ids = byQueue.get(queue);
      if (ids) ids.push(id);
      else byQueue.set(queue, [id]);
    };
    for (const run of this.#inFlight.values()) add(run.queue, run.messageId);
    for (const { queue, message } of this.#buffer) add(queue, message.msgId);
    return byQueue;
  }

  /** The concrete queue list; "*" is resolved against the queues that exist, every few seconds. */
  async #refreshQueues(force: boolean): Promise<void> {
    if (!this.#options.queues.includes("*")) {
      if (force) {
        for (const queue of this.#options.queues) await this.#store.ensureQueue(queue);
        this.#queues = [...this.#options.queues];
      }
      return;
    }
    if (!force && Date.now() - this.#lastQueueRefresh < 5_000) return;
    this.#lastQueueRefresh = Date.now();
    const named = this.#options.queues.filter((queue) => queue !== "*");
    const excluded = new Set([...named, ...this.#options.excludeQueues]);
    const others = (await this.#store.listQueues()).filter((queue) => !excluded.has(queue));
    this.#queues = [...named, ...others];
  }

  #onNotification(queue: string): void {
    if (this.#queues.includes(queue)) this.#wake(true);
    else if (this.#options.queues.includes("*") && !this.#options.excludeQueues.includes(queue)) {
      this.#lastQueueRefresh = 0; // a queue this wildcard worker has not seen yet
      this.#wake(true);
    }
  }

  #onSlotFreed(): void {
    if (this.#state === "running") this.#pump();
    // Only worth a read if the last one came back full or a notification arrived since.
    if (this.#maybeMore) this.#wake(true);
  }

  #pollDue = false;

  #maybeMoreOrPollDue(): boolean {
    const due = this.#maybeMore || this.#pollDue;
    this.#pollDue = false;
    return due;
  }

  #wake(maybeMore: boolean): void {
    if (maybeMore) this.#maybeMore = true;
    this.#wakeup.wake();
  }

  async #sleep(ms: number): Promise<void> {
    if (this.#state !== "running") return;
    if (!(await this.#wakeup.sleep(ms))) this.#pollDue = true;
  }

  #databaseError(error: unknown): void {
    if (!this.#databaseDown) {
      this.#databaseDown = true;
      this.#reportError(error, "claiming messages failed; retrying with backoff");
    }
  }

  #databaseBack(): void {
    if (this.#databaseDown) {
      this.#databaseDown = false;
      this.#extender.extendNow(); // in-flight VTs may be close to running out after the outage
      this.#deps.logger.info({ workerId: this.id }, "database reachable again; claiming resumed");
    }
  }

  #reportError(error: unknown, context: string): void {
    const record = toErrorRecord(error);
    this.#deps.logger.error({ workerId: this.id, err: record.message }, context);
    this.#deps.emitter.emit("worker:error", { workerId: this.id, error: record, context });
  }
}
