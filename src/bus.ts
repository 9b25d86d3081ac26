import pg from "pg";
import { PgbusError, ValidationError } from "./errors.ts";
import { withMigrateHints } from "./db/pg-errors.ts";
import { isQueueGone } from "./queue/missing.ts";
import type { Queryable } from "./db/queryable.ts";
import { BusConnections } from "./db/bus-connections.ts";
import type { JobDefinition } from "./jobs/define.ts";
import { type EnqueueOptions, prepareEnqueue, validateForEnqueue } from "./jobs/enqueue.ts";
import { Batch, type BatchOptions } from "./jobs/batch.ts";
import { JobRegistry } from "./jobs/registry.ts";
import { type Logger, silentLogger } from "./logger.ts";
import { SafeEmitter } from "./observability/emitter.ts";
import type { WorkerEvents } from "./observability/events.ts";
import { type JobMetricsRecorder, jobMetricsRecorder } from "./observability/job-metrics.ts";
import { traceSend } from "./observability/tracing.ts";
import { Worker, type WorkerOptions } from "./worker/worker.ts";
import { QueueClient } from "./queue/client.ts";
import { DEFAULT_MAX_PAYLOAD_BYTES } from "./queue/payload.ts";
import { type MigrationResult, migrate } from "./schema/migrator.ts";
import { Consumer, type ConsumerOptions } from "./events/consumer.ts";
import { type UnsubscribeResult, ensureSubscriptions, removeSubscription } from "./events/consumer-store.ts";
import type { PublishOptions } from "./events/event.ts";
import { Outbox } from "./events/outbox.ts";
import { OutboxPoller, type OutboxPollerOptions } from "./events/outbox-poller.ts";
import { type PublishedEvent, publishEvent } from "./events/publish.ts";
import {
  type EventHandler,
  type SubscriberDefinition,
  type SubscriberOptions,
  defineSubscriber,
  isSubscriberDefinition,
  subscribersByQueue,
  validateSubscriberName,
} from "./events/subscriber.ts";
import { MAX_QUEUE_NAME_WITH_DLQ, validateQueueName } from "./queue/names.ts";
import type { WorkerStore } from "./worker/worker-store.ts";
import { WORKER_DEFAULTS } from "./worker/options.ts";
import type { NotificationHandlers, NotificationSource } from "./worker/notifications.ts";
import { pauseQueue, resumeQueue } from "./queue/pause.ts";
import { type CancelOptions, type CancelResult, cancelJob } from "./queue/cancel.ts";
import { type QueueState, queueState } from "./queue/breaker.ts";

export interface PgbusOptions {
  /** PostgreSQL URL. Give this or `pool`. */
  connectionString?: string;
  /** The application's own pg.Pool; pgbus never ends it. */
  pool?: pg.Pool;
  /**
   * A URL straight to PostgreSQL for what needs a session of its own: the workers' and the
   * outbox poller's LISTEN connections. Give it when `connectionString` points at a pooler
   * in transaction mode (PgBouncer), where LISTEN does not work. Default: the same URL.
   */
  directUrl?: string;
  /**
   * false: send every statement unnamed instead of preparing it once per connection, for
   * a pooler in transaction mode (PgBouncer before 1.21 has no named prepared statements
   * there). Applies to the pools pgbus opens. Default true. See docs/production.md.
   */
  preparedStatements?: boolean;
  /** Jobs this process enqueues and runs. */
  jobs?: JobDefinition[];
  /** Default: silent. Any pino-compatible logger works. */
  logger?: Logger;
  /** Largest message, in bytes of JSON. Default 4 MiB. */
  maxPayloadBytes?: number;
  /**
   * Where the workers this bus builds get their wake-ups. Default: a LISTEN connection per
   * worker. `pgbus start` passes the supervisor's one LISTEN, fanned out to its children.
   */
  notifications?: (handlers: NotificationHandlers) => NotificationSource;
  /**
   * Job counters and durations for /metrics: the workers this bus builds count in memory
   * and add their counts to pgbus.job_metrics every `flushIntervalMs` (default 5000), so
   * /metrics served by any process shows the whole cluster. `false` turns it off.
   */
  metrics?: { flushIntervalMs?: number } | false;
}

export interface BusPublishOptions extends PublishOptions {
  /** Publish inside the caller's transaction: a pg PoolClient, or any `{ query(text, values) }`. */
  client?: Queryable;
  /**
   * Refuse a publish that reaches no subscriber queue (a PgbusError NO_SUBSCRIBERS) instead
   * of returning `queues: 0`. Default false: such a publish is logged as a warning.
   */
  requireSubscriber?: boolean;
}

export type { JobMessage } from "./queue/envelope.ts";
export type { EnqueueOptions };

/**
 * The entry point: enqueues jobs (optionally inside the caller's transaction), migrates
 * the schema, and builds workers. One per process is plenty.
 */
export class Pgbus {
  readonly queues: QueueClient;
  readonly registry: JobRegistry;
  /** The transactional outbox: publish and enqueue as rows of the caller's transaction; an OutboxPoller sends them. */
  readonly outbox: Outbox;
  readonly #pool: pg.Pool;
  readonly #connections: BusConnections;
  readonly #logger: Logger;
  readonly #emitter: SafeEmitter<WorkerEvents>;
  readonly #ensuredQueues = new Set<string>();
  readonly #workers = new Set<Worker>();
  /** Consumers and outbox pollers this bus built, stopped by close(). */
  readonly #services = new Set<{ stop(): Promise<void> }>();
  readonly #maxPayloadBytes: number;
  #closing: Promise<void> | null = null;
  readonly #notifications: PgbusOptions["notifications"];
  /** Started with the first worker; flushed and stopped by close(). */
  readonly #jobMetrics: JobMetricsRecorder | null;

  constructor(options: PgbusOptions) {
    this.#connections = new BusConnections(options);
    this.#pool = this.#connections.pool;
    this.#logger = options.logger ?? silentLogger;
    this.#notifications = options.notifications;
    this.#emitter = new SafeEmitter<WorkerEvents>(() => this.#logger);
    this.registry = new JobRegistry(options.jobs ?? []);
    this.#jobMetrics = jobMetricsRecorder(options.metrics, { db: this.#pool, emitter: this.#emitter, logger: this.#logger });
    this.#maxPayloadBytes = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    this.queues = new QueueClient(this.#pool, { prepared: this.#connections.prepared, maxPayloadBytes: this.#maxPayloadBytes });
    this.outbox = new Outbox({
      pool: this.#pool,
      maxPayloadBytes: this.#maxPayloadBytes,
      prepareJob: async (job) => {
        this.registry.add(job);
        await this.#ensureQueue(job.queue, this.queues);
      },
      validatePayload: validateForEnqueue,
    });
  }

  /**
   * Pauses a queue: every worker, on every host, stops claiming from it with its next claim;
   * running jobs finish and enqueues are still accepted. Idempotent; returns since when the
   * queue is paused. A PgbusError QUEUE_NOT_FOUND for a queue that does not exist.
   */
  pauseQueue(queue: string, options: { pausedBy?: string } = {}): Promise<Date> {
    return pauseQueue(this.#pool, queue, options.pausedBy);
  }

  /**
   * Cancels a job by its message id: a waiting or delayed job is archived as cancelled at
   * once; a running one has its ctx.signal aborted in whatever process runs it, is never
   * retried, and is archived as cancelled when its run ends. Returns what happened (see
   * CancelStatus and docs/jobs.md, cancellation). A PgbusError QUEUE_NOT_FOUND for a queue
   * that does not exist; `not_found` for an id the queue never had.
   */
  cancel(queue: string, messageId: string | number | bigint, options: CancelOptions = {}): Promise<CancelResult> {
    return cancelJob(this.#pool, queue, messageId, options);
  }

  /** Resumes a paused queue (closing its circuit breaker) and wakes its workers at once; false when it was not paused. */
  async resumeQueue(queue: string): Promise<boolean> {
    const { resumed, breakerWas } = await resumeQueue(this.#pool, queue);
    if (breakerWas === "open" || breakerWas === "half_open") {
      this.#logger.info({ queue }, `circuit breaker of queue ${queue} closed: the queue was resumed by hand`);
      this.#emitter.emit("queue:breaker", { queue, state: "closed", reason: "resumed" });
    }
    return resumed;
  }

  /** Whether a queue is paused (by hand or by its circuit breaker), and its breaker's state. */
  queueState(queue: string): Promise<QueueState> {
    return queueState(this.#pool, queue);
  }

  /** A batch of jobs whose callbacks are enqueued once, when all of them finished (see Batch, docs/jobs.md). */
  batch<C = unknown>(options: BatchOptions<C>): Batch {
    return new Batch(options, {
      pool: this.#pool,
      enqueueMany: (job, payloads, enqueueOptions) => this.#enqueue(job, payloads, enqueueOptions, false),
      ensureQueue: (queue) => this.#ensureQueue(queue, this.queues),
      register: (job) => this.registry.add(job),
    });
  }

  /** Applies pending migrations (safe from many processes at once) and creates the queues of the registered jobs. */
  async migrate(): Promise<MigrationResult> {
    const result = await migrate(this.#pool);
    for (const queue of this.registry.queues()) await this.#ensureQueue(queue, this.queues);
    const removed = await ensureSubscriptions(this.#pool, this.#subscribers());
    for (const binding of removed) this.#logger.info(binding, "subscriber pattern changed: old binding removed");
    return result;
  }

  /** The bus's connection pool (its own, or the application's): what the dashboard, /metrics and health checks read through. */
  get pool(): pg.Pool {
    return this.#pool;
  }

  on<K extends keyof WorkerEvents>(event: K, listener: (payload: WorkerEvents[K]) => unknown): () => void {
    return this.#emitter.on(event, listener);
  }

  /** Enqueues one job; returns its message id. */
  async enqueue<P>(job: JobDefinition<P>, payload: P, options: EnqueueOptions<P> = {}): Promise<string> {
    const [id] = await this.#enqueue(job, [payload], options, true);
    return id!;
  }

  /** Enqueues many jobs of one kind in one statement; returns ids in input order. */
  enqueueMany<P>(job: JobDefinition<P>, payloads: readonly P[], options: EnqueueOptions<P> = {}): Promise<string[]> {
    return this.#enqueue(job, payloads, options, false);
  }

  async #enqueue<P>(job: JobDefinition<P>, payloads: readonly P[], options: EnqueueOptions<P>, single: boolean): Promise<string[]> {
    const { messages, headers, uniqueKeys, uniqueFor } = await prepareEnqueue(job, payloads, options, single);
    this.registry.add(job);
    const queues = options.client ? this.queues.withClient(options.client) : this.queues;
    for (let attempt = 1; ; attempt += 1) {
      await this.#ensureQueue(job.queue, queues);
      try {
        const span = { operation: "enqueue", target: job.name, destination: job.queue, count: messages.length } as const;
        return await traceSend(span, headers, (traced) =>
          queues.sendBatch(job.queue, messages, {
            delayMs: options.delayMs,
            runAt: options.runAt,
            headers: traced,
            groupKey: options.groupKey,
            uniqueKeys,
            uniqueFor,
          }),
        );
      } catch (error) {
        if (!isQueueGone(error)) throw error;
        // The queue was dropped after it was made or remembered. Forget it, and make it
        // again as on first use; not inside the caller's transaction, which the failed
        // statement aborted, and not a second time (it is being dropped over and over).
        this.#ensuredQueues.delete(job.queue);
        if (options.client || attempt > 1) {
          const retry = options.client ? "; the transaction is aborted: retry it" : "";
          throw new PgbusError("QUEUE_NOT_FOUND", `queue ${job.queue} was dropped while job ${job.name} was enqueued${retry}`, {
            cause: error,
          });
        }
      }
    }
  }

  /**
   * Publishes an event: one copy to every subscriber queue whose pattern matches
   * `routingKey`, fanned out inside PostgreSQL in one statement. With `client`, inside the
   * caller's transaction. Returns the event and how many queues got it.
   */
  async publish<P>(routingKey: string, payload: P, options: BusPublishOptions = {}): Promise<PublishedEvent<P>> {
    const { client, requireSubscriber, ...rest } = options;
    const db = withMigrateHints(client ?? this.#pool);
    const target = { db, prepared: !client && this.#connections.prepared, maxPayloadBytes: this.#maxPayloadBytes };
    const span = { operation: "publish", target: routingKey, destination: routingKey, count: 1 } as const;
    const published = await traceSend(span, rest.headers, (headers) => publishEvent(target, routingKey, payload, { ...rest, headers }));
    if (published.queues === 0) {
      // An event no subscriber gets is gone: say so rather than drop it without a word.
      const why = `event ${routingKey} reached no subscriber: no binding matches it (subscribers are bound by bus.migrate(), pgbus migrate and consumer start)`;
      if (requireSubscriber) throw new PgbusError("NO_SUBSCRIBERS", why);
      this.#logger.warn({ routingKey, eventId: published.eventId }, why);
    }
    return published;
  }

  /**
   * Registers a subscriber: `handler` gets every event whose routing key matches `pattern`
   * (`*` one segment, `#` zero or more), from the subscriber's own queue (default
   * `ev_<name>`). Its queue and binding are created by migrate() or a consumer's start();
   * a consumer (bus.consumer) runs it.
   */
  subscribe<P = unknown>(pattern: string, handler: EventHandler<P>, options: Omit<SubscriberOptions, "pattern">): SubscriberDefinition<P> {
    const definition = defineSubscriber<P>({ ...options, pattern, handle: handler });
    subscribersByQueue([...this.#subscribers(), definition as SubscriberDefinition]);
    this.registry.add(definition as JobDefinition);
    return definition;
  }

  /**
   * Removes a subscriber that is no longer in the code: unbinds every pattern from its
   * queue, so publishes stop filling it. Its queue keeps the copies already there (drain
   * them, or pass `dropQueue: true` to drop the queue and its DLQ too). The queue is the
   * one given, or `ev_<name>`. Refused for the queue of a subscriber still registered with
   * this bus (the next migrate() or consumer start would bind it again); a subscriber that
   * moved to another queue can have its old one unsubscribed by naming it.
   */
  async unsubscribe(name: string, options: { queue?: string; dropQueue?: boolean } = {}): Promise<UnsubscribeResult> {
    validateSubscriberName(name);
    if (options.dropQueue !== undefined && typeof options.dropQueue !== "boolean") {
      throw new ValidationError("INVALID_OPTION", `unsubscribe option dropQueue must be a boolean, got ${String(options.dropQueue)}`);
    }
    const registered = this.#subscribers().find((definition) => definition.subscriber.name === name);
    const queue = validateQueueName(options.queue ?? registered?.subscriber.queue ?? `ev_${name}`, MAX_QUEUE_NAME_WITH_DLQ);
    // A subscriber that moved to another queue may have its old queue unbound; its current one not.
    if (registered && registered.subscriber.queue === queue) {
      throw new ValidationError(
        "INVALID_OPTION",
        `subscriber ${name} is still registered with this bus (pattern ${registered.subscriber.pattern}); ` +
          `remove it from your jobs and subscribe() calls first, or its binding comes back at the next migrate() or consumer start`,
      );
    }
    return removeSubscription(this.#pool, queue, options.dropQueue ?? false);
  }

  /** A consumer of the bus's subscribers (or those of `jobsModule`); call start() on it. */
  consumer(options: ConsumerOptions = {}): Consumer {
    const consumer = new Consumer(options, {
      registry: this.registry,
      db: this.#pool,
      logger: this.#logger,
      createWorker: (workerOptions, registry, store) => this.#buildWorker(workerOptions, registry, store),
    });
    this.#track(consumer);
    return consumer;
  }

  /** An outbox poller over the bus's pool; call start() on it. The supervisor runs one as a role. */
  outboxPoller(options: Omit<OutboxPollerOptions, "pool"> = {}): OutboxPoller {
    const poller = new OutboxPoller({ logger: this.#logger, clientConfig: this.#connections.session, ...options, pool: this.#pool });
    this.#track(poller);
    return poller;
  }

  /**
   * A worker over `queues`: at most two connections for claim and ack (a share of the
   * bus's pool, or a pool of its own when the bus was given the application's pool) and
   * one for LISTEN, whatever its capacity. Call start() on it.
   */
  worker(options: WorkerOptions): Worker {
    return this.#buildWorker(options, this.registry);
  }

  #buildWorker(options: WorkerOptions, registry: JobRegistry, store?: (db: Queryable) => WorkerStore): Worker {
    // Statements bounded to half the VT: a silent connection fails a claim or an extension
    // (reported, retried) well before the messages this worker holds could reappear.
    const vtSeconds = options.visibilityTimeoutSec ?? WORKER_DEFAULTS.visibilityTimeoutSec;
    const { db, release } = this.#connections.forWorker(Math.max(1_000, vtSeconds * 500));
    const worker: Worker = new Worker(options, {
      db,
      clientConfig: this.#connections.session,
      registry,
      logger: this.#logger,
      emitter: this.#emitter,
      store: store?.(db),
      notifications: this.#notifications,
      onStopped: async () => {
        this.#workers.delete(worker);
        await release();
      },
    });
    this.#workers.add(worker);
    this.#jobMetrics?.start();
    return worker;
  }

  /** Stops the workers this bus built (gracefully) and closes its own pool. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    await Promise.all([...this.#services].map((service) => service.stop()));
    await Promise.all([...this.#workers].map((worker) => worker.stop()));
    await this.#jobMetrics?.stop();
    await this.#connections.close();
  }

  #subscribers(): SubscriberDefinition[] {
    return this.registry.all().filter(isSubscriberDefinition);
  }

  /** Remembered for close(); stop is idempotent, so stopping one twice costs nothing. */
  #track(service: { stop(): Promise<void> }): void {
    this.#services.add(service);
  }

  async #ensureQueue(queue: string, queues: QueueClient): Promise<void> {
    if (this.#ensuredQueues.has(queue)) return;
    await queues.createQueue(queue);
    // Inside a caller's transaction the queue exists only if that transaction commits.
    if (queues === this.queues) this.#ensuredQueues.add(queue);
  }
}
