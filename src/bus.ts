import pg from "pg";
import { ValidationError } from "./errors.ts";
import { withMigrateHints } from "./db/pg-errors.ts";
import { clientConfigOf, createPool, type Queryable } from "./db/queryable.ts";
import type { JobDefinition } from "./jobs/define.ts";
import { JobRegistry } from "./jobs/registry.ts";
import { type Logger, silentLogger } from "./logger.ts";
import { SafeEmitter } from "./observability/emitter.ts";
import type { WorkerEvents } from "./observability/events.ts";
import { Worker, type WorkerOptions } from "./worker/worker.ts";
import { QueueClient, type Headers } from "./queue/client.ts";
import { DEFAULT_MAX_PAYLOAD_BYTES } from "./queue/payload.ts";
import { type MigrationResult, migrate } from "./schema/migrator.ts";
import { Consumer, type ConsumerOptions } from "./events/consumer.ts";
import { ensureSubscriptions } from "./events/consumer-store.ts";
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
} from "./events/subscriber.ts";
import type { WorkerStore } from "./worker/worker-store.ts";
import { WORKER_DEFAULTS } from "./worker/options.ts";
import type { NotificationHandlers, NotificationSource } from "./worker/notifications.ts";
import { type JobMessage, jobEnvelope } from "./queue/envelope.ts";

export interface PgbusOptions {
  /** PostgreSQL URL. Give this or `pool`. */
  connectionString?: string;
  /** The application's own pg.Pool; pgbus never ends it. */
  pool?: pg.Pool;
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
}

export interface EnqueueOptions {
  /** Run no sooner than this many ms from now. */
  delayMs?: number;
  /** Run no sooner than this time. */
  runAt?: Date;
  /** Enqueue inside the caller's transaction: a pg PoolClient, or any `{ query(text, values) }`. */
  client?: Queryable;
  headers?: Headers;
}

export interface BusPublishOptions extends PublishOptions {
  /** Publish inside the caller's transaction: a pg PoolClient, or any `{ query(text, values) }`. */
  client?: Queryable;
}

export type { JobMessage } from "./queue/envelope.ts";

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
  readonly #ownsPool: boolean;
  readonly #logger: Logger;
  readonly #emitter: SafeEmitter<WorkerEvents>;
  readonly #ensuredQueues = new Set<string>();
  readonly #workers = new Set<Worker>();
  /** Consumers and outbox pollers this bus built, stopped by close(). */
  readonly #services = new Set<{ stop(): Promise<void> }>();
  readonly #maxPayloadBytes: number;
  #closing: Promise<void> | null = null;
  readonly #notifications: PgbusOptions["notifications"];

  constructor(options: PgbusOptions) {
    if (!options.pool && !options.connectionString) {
      throw new ValidationError("INVALID_OPTION", "Pgbus needs connectionString (a PostgreSQL URL) or pool (a pg.Pool)");
    }
    this.#ownsPool = !options.pool;
    this.#pool = options.pool ?? createPool({ connectionString: options.connectionString }, { max: 10, applicationName: "pgbus" });
    this.#logger = options.logger ?? silentLogger;
    this.#notifications = options.notifications;
    this.#emitter = new SafeEmitter<WorkerEvents>(() => this.#logger);
    this.registry = new JobRegistry(options.jobs ?? []);
    this.#maxPayloadBytes = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    this.queues = new QueueClient(this.#pool, { prepared: true, maxPayloadBytes: this.#maxPayloadBytes });
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

  /** Applies pending migrations (safe from many processes at once) and creates the queues of the registered jobs. */
  async migrate(): Promise<MigrationResult> {
    const result = await migrate(this.#pool);
    for (const queue of this.registry.queues()) await this.#ensureQueue(queue, this.queues);
    await ensureSubscriptions(this.#pool, this.#subscribers());
    return result;
  }

  on<K extends keyof WorkerEvents>(event: K, listener: (payload: WorkerEvents[K]) => unknown): () => void {
    return this.#emitter.on(event, listener);
  }

  /** Enqueues one job; returns its message id. */
  async enqueue<P>(job: JobDefinition<P>, payload: P, options: EnqueueOptions = {}): Promise<string> {
    const [id] = await this.enqueueMany(job, [payload], options);
    return id!;
  }

  /** Enqueues many jobs of one kind in one statement; returns ids in input order. */
  async enqueueMany<P>(job: JobDefinition<P>, payloads: readonly P[], options: EnqueueOptions = {}): Promise<string[]> {
    this.registry.add(job);
    for (const [index, payload] of payloads.entries()) await validateForEnqueue(job, payload, index);
    const queues = options.client ? this.queues.withClient(options.client) : this.queues;
    await this.#ensureQueue(job.queue, queues);
    const messages: JobMessage<P>[] = payloads.map((payload) => jobEnvelope(job.name, payload));
    return queues.sendBatch(job.queue, messages, { delayMs: options.delayMs, runAt: options.runAt, headers: options.headers });
  }

  /**
   * Publishes an event: one copy to every subscriber queue whose pattern matches
   * `routingKey`, fanned out inside PostgreSQL in one statement. With `client`, inside the
   * caller's transaction. Returns the event and how many queues got it.
   */
  publish<P>(routingKey: string, payload: P, options: BusPublishOptions = {}): Promise<PublishedEvent<P>> {
    const { client, ...rest } = options;
    const db = withMigrateHints(client ?? this.#pool);
    return publishEvent({ db, prepared: !client, maxPayloadBytes: this.#maxPayloadBytes }, routingKey, payload, rest);
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

  /** A consumer of the bus's subscribers (or those of `jobsModule`); call start() on it. */
  consumer(options: ConsumerOptions = {}): Consumer {
    const consumer = new Consumer(options, {
      registry: this.registry,
      db: this.#pool,
      createWorker: (workerOptions, registry, store) => this.#buildWorker(workerOptions, registry, store),
    });
    this.#track(consumer);
    return consumer;
  }

  /** An outbox poller over the bus's pool; call start() on it. The supervisor runs one as a role. */
  outboxPoller(options: Omit<OutboxPollerOptions, "pool"> = {}): OutboxPoller {
    const poller = new OutboxPoller({ logger: this.#logger, ...options, pool: this.#pool });
    this.#track(poller);
    return poller;
  }

  /**
   * A worker over `queues`, with its own small connection pool (two connections for claim
   * and ack, one for LISTEN, whatever its capacity). Call start() on it.
   */
  worker(options: WorkerOptions): Worker {
    return this.#buildWorker(options, this.registry);
  }

  #buildWorker(options: WorkerOptions, registry: JobRegistry, store?: (db: Queryable) => WorkerStore): Worker {
    const clientConfig = clientConfigOf(this.#ownsPool ? (this.#pool.options.connectionString as string) : this.#pool);
    // Statements bounded to half the VT: a silent connection fails a claim or an extension
    // (reported, retried) well before the messages this worker holds could reappear.
    const vtSeconds = options.visibilityTimeoutSec ?? WORKER_DEFAULTS.visibilityTimeoutSec;
    const db = createPool(clientConfig, { max: 2, applicationName: "pgbus:worker", queryTimeoutMs: Math.max(1_000, vtSeconds * 500) });
    const worker: Worker = new Worker(options, {
      db,
      clientConfig,
      registry,
      logger: this.#logger,
      emitter: this.#emitter,
      store: store?.(db),
      notifications: this.#notifications,
      onStopped: async () => {
        this.#workers.delete(worker);
        await db.end().catch(() => {});
      },
    });
    this.#workers.add(worker);
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
    if (this.#ownsPool) await this.#pool.end();
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

async function validateForEnqueue<P>(job: JobDefinition<P>, payload: P, index: number): Promise<void> {
  if (!job.schema) return;
  const result = await job.schema["~standard"].validate(payload);
  if (result.issues) {
    const issues = result.issues.map((issue) => issue.message).join("; ");
    throw new ValidationError("INVALID_PAYLOAD", `payload ${index} of job ${job.name} is invalid: ${issues}`);
  }
}
