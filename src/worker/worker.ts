import { randomUUID } from "node:crypto";
import { ValidationError } from "../errors.ts";
import { type JobRegistry, loadJobsModule } from "../jobs/registry.ts";
import { createExecutionPool } from "../pools/create.ts";
import type { ExecutionPool } from "../pools/types.ts";
import { toLeaseClock } from "../pools/lease.ts";
import { readJobEnvelope } from "../queue/envelope.ts";
import { validateQueueName } from "../queue/names.ts";
import { Acker } from "./acker.ts";
import { Cancellations } from "./cancellation.ts";
import { BreakerEvents } from "./breaker-events.ts";
import { ClaimLoop } from "./claim-loop.ts";
import { claimRound } from "./claim-round.ts";
import { ClaimedBuffer, claimsByQueue } from "./claimed-buffer.ts";
import { LimitGate } from "./limits.ts";
import { Settler } from "./settler.ts";
import { WorkerReporter } from "./reporter.ts";
import {
  type ResolvedWorkerOptions,
  type RoutedMessage,
  type WorkerDependencies,
  type WorkerOptions,
  type WorkerStats,
  resolveWorkerOptions,
} from "./options.ts";
import { type NotificationHandlers, type NotificationSource, listenForQueues } from "./notifications.ts";
import { PendingWork } from "./pending-work.ts";
import { Runs } from "./runs.ts";
import { MISSING_QUEUE_RETRY_MS, QueueSet } from "./queue-set.ts";
import { VisibilityExtender } from "./visibility-extender.ts";
import { withFifoClaims } from "./fifo-store.ts";
import { type Claim, type WorkerStore, createWorkerStore } from "./worker-store.ts";

export type { RoutedMessage, WorkerDependencies, WorkerOptions, WorkerStats };

/** Reads the job envelope that Pgbus.enqueue writes. */
export function routeJobMessage(_queue: string, message: unknown): RoutedMessage | null {
  return readJobEnvelope(message);
}

type State = "idle" | "running" | "stopping" | "stopped";

/**
 * Claims messages from its queues and runs them in an execution pool. Reads as many as
 * the pool has free slots, wakes on NOTIFY and on every completion (polling only as a
 * backstop), acks in batches, and carries out the settlement of every finished run
 * (jobs/settlement.ts decides it), keeping the VT of in-flight messages extended while it lives.
 */
export class Worker {
  readonly id = randomUUID();
  readonly #options: ResolvedWorkerOptions & { routeMessage: NonNullable<WorkerOptions["routeMessage"]> };
  readonly #buffer = new ClaimedBuffer();
  readonly #deps: WorkerDependencies;
  readonly #store: WorkerStore;
  readonly #queueSet: QueueSet;
  #runs: Runs | null = null;
  readonly #followUps = new PendingWork();
  /** Flow limits (concurrency, rate); null for a worker without a database pool of its own. */
  readonly #limits: LimitGate | null;
  #registry: JobRegistry;
  #pool: ExecutionPool | null = null;
  #notifications: NotificationSource | null = null;
  #acker: Acker;
  #batchAcker: Acker;
  readonly #breaker: BreakerEvents;
  #settler: Settler;
  readonly #reporter: WorkerReporter;
  #extender: VisibilityExtender;
  readonly #cancellations: Cancellations;
  #state: State = "idle";
  readonly #claimLoop: ClaimLoop;
  #loopDone: Promise<void> = Promise.resolve();
  #stopPromise: Promise<void> | null = null;
  /** stop() waits for a start under way, so nothing start() opens outlives stop(). */
  #starting: Promise<void> | null = null;

  constructor(options: WorkerOptions, deps: WorkerDependencies) {
    if (!Array.isArray(options.queues) || options.queues.length === 0) {
      throw new ValidationError(
        "INVALID_OPTION",
        `worker queues must be a non-empty list of queue names or ["*"], got ${JSON.stringify(options.queues)}`,
      );
    }
    for (const queue of options.queues) if (queue !== "*") validateQueueName(queue);
    this.#options = { ...resolveWorkerOptions(options), queues: options.queues, routeMessage: options.routeMessage ?? routeJobMessage };
    if (!deps.store && !deps.db) throw new ValidationError("INVALID_OPTION", "a worker needs either a database pool (db) or a store");
    this.#deps = deps;
    this.#reporter = new WorkerReporter(this.id, deps.logger, deps.emitter);
    this.#registry = deps.registry;
    this.#store =
      deps.store ??
      withFifoClaims(createWorkerStore(deps.db!, { breakerFor: this.#options.breakerFor }), {
        pool: deps.db!,
        fifoFor: this.#options.fifoFor,
        // The queue may hold the group's next message: claimable again at once (a short FIFO
        // claim does not mean the queue is empty, only that its groups were busy).
        onGroupOpened: (queue) => {
          if (this.#queueSet.notified(queue)) this.#wake(true);
        },
      });
    this.#breaker = new BreakerEvents({
      store: this.#store,
      modeFor: this.#options.ackModeFor,
      emitter: deps.emitter,
      logger: deps.logger,
      workerId: this.id,
    });
    this.#queueSet = new QueueSet({
      selectors: options.queues,
      exclude: this.#options.excludeQueues,
      store: this.#store,
      pollIntervalMs: this.#options.pollIntervalMs,
      onMissing: (queue, error) =>
        this.#reportError(
          error,
          `queue ${queue} no longer exists (dropped?); skipping it and checking again every ${MISSING_QUEUE_RETRY_MS / 1000} s`,
        ),
      onBack: (queue) => this.#deps.logger.info({ workerId: this.id, queue }, "queue is back; claiming from it again"),
    });
    this.#acker = this.#newAcker("message(s)", this.#store);
    this.#batchAcker = this.#newAcker("batch job(s)", { ack: (queue, claims, mode) => this.#store.ackBatchJobs(queue, claims, mode) });
    this.#limits = deps.db
      ? new LimitGate({
          db: deps.db,
          registry: () => this.#registry,
          routeMessage: this.#options.routeMessage,
          queueRateLimit: options.rateLimitFor,
          processId: options.processId ?? null,
          leaseSeconds: this.#options.visibilityTimeoutSec,
          onReady: () => this.#wake(true),
          onInvalidKey: (queue, message, job, outcome) => this.#runs!.settleUnrun(queue, message, job, outcome),
          reportError: (error, context) => this.#reportError(error, context),
          followUps: this.#followUps,
        })
      : null;
    this.#settler = new Settler({
      store: this.#store,
      acker: this.#acker,
      batchAcker: this.#batchAcker,
      breaker: this.#breaker,
      emitter: deps.emitter,
      reportError: (error, context) => this.#reportError(error, context),
      reportLost: (what, ref) => this.#reporter.ownershipLost(`${what} of message ${ref.messageId} (job ${ref.job}) in ${ref.queue}`),
      onFinished: this.#limits ? (queue, claims) => this.#limits!.finished(queue, claims) : undefined,
    });
    this.#extender = new VisibilityExtender({
      store: this.#store,
      vtSeconds: this.#options.visibilityTimeoutSec,
      inFlight: () => this.#inFlightByQueue(),
      onError: (error) => this.#reportError(error, "extending the VT of in-flight messages failed"),
      onLost: (lost) => this.#reporter.ownershipLost(`VT extension of ${lost} in-flight message(s)`),
      onExtended: (heldUntil) => this.#pool?.extendLeases(toLeaseClock(this.#startBy(heldUntil))),
    });
    this.#cancellations = new Cancellations({
      store: this.#store,
      inFlight: () => this.#inFlightByQueue(),
      cancelRun: (queue, messageId) => this.#runs?.cancel(queue, messageId) ?? false,
      vtSeconds: this.#options.visibilityTimeoutSec,
      onError: (error) => this.#reportError(error, "checking in-flight messages for cancels failed"),
    });
    this.#claimLoop = new ClaimLoop({
      total: this.#options.capacity + this.#options.prefetch,
      pollIntervalMs: this.#options.pollIntervalMs,
      isRunning: () => this.#state === "running",
      held: () => this.#pool!.metadata().busy + this.#buffer.length,
      poolIdle: () => this.#pool!.isIdle(),
      pump: () => this.#pump(),
      claim: async (size) => {
        await this.#queueSet.refresh(false);
        return this.#claim(size);
      },
      onClaimed: () => this.#databaseBack(),
      onClaimFailed: (error) => this.#databaseError(error),
      onPollDue: () => this.#queueSet.pollDue(),
    });
  }

  /** An acker of `what` (plain messages, or batch jobs with their own statement). */
  #newAcker(what: string, store: Pick<WorkerStore, "ack">): Acker {
    return new Acker(
      store,
      this.#options.ackModeFor,
      (error, queue, claims) =>
        this.#reportError(error, `ack of ${claims.length} ${what} in ${queue} failed; they will be redelivered after their VT`),
      (queue, lost) => this.#reporter.ownershipLost(`ack of ${lost} ${what} in ${queue}`),
    );
  }

  get queues(): readonly string[] {
    return this.#queueSet.all;
  }

  stats(): WorkerStats {
    const meta = this.#pool?.metadata();
    return {
      ...this.#settler.stats,
      busy: meta?.busy ?? 0,
      capacity: this.#options.capacity,
      executionMode: meta?.mode ?? (this.#options.executionMode === "threads" ? "threads" : "async"),
    };
  }

  /** Resolves once the pool is ready and the first claim is under way; rejects if the pool cannot start. */
  start(): Promise<void> {
    this.#starting ??= this.#start();
    return this.#starting;
  }

  async #start(): Promise<void> {
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
      this.#runs = new Runs({
        pool: this.#pool,
        registry: this.#registry,
        routeMessage: this.#options.routeMessage,
        settler: this.#settler,
        breaker: this.#breaker,
        emitter: this.#deps.emitter,
        followUps: this.#followUps,
        cancelRequested: (queue, messageId) => this.#cancellations.takeRequested(queue, messageId),
      });
    } catch (error) {
      this.#state = "stopped";
      throw error;
    }
    await this.#queueSet.refresh(true).catch((error: unknown) => this.#databaseError(error));
    this.#notifications = this.#openNotifications();
    this.#extender.start();
    this.#cancellations.start();
    // Claiming starts without waiting for LISTEN: the first batch does not depend on it, and
    // once LISTEN is in place onConnected wakes the loop, so nothing sent meanwhile waits.
    this.#loopDone = this.#claimLoop.run();
    await this.#notifications.start();
    this.#deps.emitter.emit("worker:start", {
      workerId: this.id,
      queues: [...this.#queueSet.all],
      capacity: this.#options.capacity,
      executionMode: this.#pool.mode,
    });
  }

  #openNotifications(): NotificationSource {
    const handlers: NotificationHandlers = {
      onNotification: (payload) => {
        if (this.#limits?.notified(payload) || this.#cancellations.notified(payload)) return;
        if (this.#queueSet.notified(payload)) this.#wake(true);
      },
      // Notifications sent while disconnected were lost: the backstop poll finds their queues.
      onConnected: () => {
        this.#queueSet.pollDue();
        this.#wake(true);
      },
    };
    if (this.#deps.notifications) return this.#deps.notifications(handlers);
    if (!this.#deps.clientConfig) throw new ValidationError("INVALID_OPTION", "a worker needs clientConfig or a notification source");
    return listenForQueues(this.#deps.clientConfig, this.#deps.logger, handlers);
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
    await this.#starting?.catch(() => {}); // a failed start already left the worker stopped
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
      abandoned = this.#runs!.abandonAll();
      this.#deps.logger.warn(
        { abandoned, shutdownTimeoutMs: this.#options.shutdownTimeoutMs },
        "shutdown timeout: aborting in-flight jobs; their messages are released for redelivery",
      );
      await pool.kill();
    }
    await this.#followUps.whenDone();
    await Promise.all([this.#acker.drain(), this.#batchAcker.drain()]);
    await this.#extender.stop();
    await this.#cancellations.stop();
    await this.#limits?.stop();
    await this.#notifications?.stop();
    if (graceful) await pool.kill(); // releases threads; nothing is in flight
    this.#state = "stopped";
    await this.#deps.onStopped?.();
    this.#deps.emitter.emit("worker:stop", { workerId: this.id, graceful, abandoned });
  }

  #claim(wanted: number): Promise<number> {
    return claimRound(
      {
        queueSet: this.#queueSet,
        acker: this.#acker,
        store: this.#store,
        visibilityTimeoutSec: this.#options.visibilityTimeoutSec,
        isRunning: () => this.#state === "running",
        isHeld: (queue) => this.#limits?.isHeld(queue) ?? false,
        sizeFor: this.#limits ? (queue, asked) => this.#limits!.claimSize(queue, asked, this.#startable()) : undefined,
        onClaimed: async (queue, messages, claimedAt) => {
          const fresh = messages.filter((message) => !this.#runs!.reclaimed(queue, message));
          if (!this.#limits) {
            for (const message of fresh) this.#buffer.push({ queue, message, claimedAt, startBy: Infinity });
            return this.#pump();
          }
          const { run, startBy, deferred } = await this.#limits.admit(queue, fresh, this.#startable());
          for (const message of run) this.#buffer.push({ queue, message, claimedAt, startBy: startBy.get(message.msgId) ?? Infinity });
          this.#pump();
          if (deferred.length > 0) {
            this.#followUps.track(this.#settler.releaseUnstarted(deferred.map((message) => ({ queue, message }))));
          }
        },
      },
      wanted,
    );
  }

  /**
   * Hands buffered messages to the pool while it has free slots; stale ones go back (a
   * fenced release). Each run carries its lease, which the pool checks again when the run
   * really starts: in threads mode a task can wait for its thread.
   */
  #pump(): void {
    const now = performance.now();
    const stale = this.#buffer.pump(
      () => this.#pool!.availableCapacity() > 0,
      // Past its VT's margin, or past what its counted rate start allows (it is claimed and counted again).
      ({ claimedAt, startBy }) => now > this.#startBy(this.#extender.heldUntil(claimedAt)) || now > startBy,
      ({ queue, message, claimedAt, startBy }) =>
        this.#runs!.start(
          queue,
          message,
          toLeaseClock(this.#startBy(this.#extender.heldUntil(claimedAt))),
          startBy === Infinity ? undefined : toLeaseClock(startBy),
        ),
    );
    if (stale.length > 0) this.#followUps.track(this.#settler.releaseUnstarted(stale));
  }

  /** Pool slots free now and not spoken for by buffered messages. */
  #startable(): number {
    return this.#pool!.availableCapacity() - this.#buffer.length;
  }

  /** The last moment (performance.now() ms) a run held until `heldUntil` may start: a margin short of it. */
  #startBy(heldUntil: number): number {
    return heldUntil - Math.min(1_000, this.#options.visibilityTimeoutSec * 100);
  }

  /** Claimed messages that never started go back at once, not after their VT, and not counted as an attempt. */
  #releaseBuffer(): Promise<void> {
    return this.#settler.releaseUnstarted(this.#buffer.takeAll());
  }

  /** Running and buffered messages by queue: everything whose VT this worker must keep extending. */
  #inFlightByQueue(): Map<string, Claim[]> {
    return claimsByQueue([...(this.#runs?.claims() ?? []), ...this.#buffer.claims()]);
  }

  #onSlotFreed(): void {
    if (this.#state === "running") this.#pump();
    // Only worth a read if the last one came back full, a notification arrived since, or a
    // rate-limited queue waits for a free slot.
    const slotWanted = this.#limits?.slotFreed() ?? false;
    if (this.#claimLoop.maybeMore || slotWanted) this.#wake(true);
  }

  #wake(maybeMore: boolean): void {
    this.#claimLoop.wake(maybeMore);
  }

  #databaseError(error: unknown): void {
    this.#reporter.databaseDown(error);
  }

  #databaseBack(): void {
    // In-flight VTs may be close to running out after the outage.
    if (this.#reporter.databaseBack()) this.#extender.extendNow();
  }

  #reportError(error: unknown, context: string): void {
    this.#reporter.error(error, context);
  }
}
