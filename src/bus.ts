import pg from "pg";
import { ValidationError } from "./errors.ts";
import { clientConfigOf, createPool, type Queryable } from "./db/queryable.ts";
import type { JobDefinition } from "./jobs/define.ts";
import { JobRegistry } from "./jobs/registry.ts";
import { type Logger, silentLogger } from "./logger.ts";
import { SafeEmitter } from "./observability/emitter.ts";
import type { WorkerEvents } from "./observability/events.ts";
import { Worker, type WorkerOptions } from "./process/worker.ts";
import { QueueClient, type Headers } from "./queue/client.ts";
import { DEFAULT_MAX_PAYLOAD_BYTES } from "./queue/payload.ts";
import { type MigrationResult, migrate } from "./schema/migrator.ts";

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

/** How a job message is stored: the job's name and its payload. PGMQ clients in any language can produce it. */
export interface JobMessage<P = unknown> {
  job: string;
  payload: P;
}

/**
 * The entry point: enqueues jobs (optionally inside the caller's transaction), migrates
 * the schema, and builds workers. One per process is plenty.
 */
export class Pgbus {
  readonly queues: QueueClient;
  readonly registry: JobRegistry;
  readonly #pool: pg.Pool;
  readonly #ownsPool: boolean;
  readonly #logger: Logger;
  readonly #emitter: SafeEmitter<WorkerEvents>;
  readonly #ensuredQueues = new Set<string>();
  readonly #workers = new Set<Worker>();
  readonly #maxPayloadBytes: number;

  constructor(options: PgbusOptions) {
    if (!options.pool && !options.connectionString) {
      throw new ValidationError("INVALID_OPTION", "Pgbus needs connectionString (a PostgreSQL URL) or pool (a pg.Pool)");
    }
    this.#ownsPool = !options.pool;
    this.#pool = options.pool ?? createPool({ connectionString: options.connectionString }, { max: 10, applicationName: "pgbus" });
    this.#logger = options.logger ?? silentLogger;
    this.#emitter = new SafeEmitter<WorkerEvents>(() => this.#logger);
    this.registry = new JobRegistry(options.jobs ?? []);
    this.#maxPayloadBytes = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    this.queues = new QueueClient(this.#pool, { prepared: true, maxPayloadBytes: this.#maxPayloadBytes });
  }

  /** Applies pending migrations (safe from many processes at once) and creates the queues of the registered jobs. */
  async migrate(): Promise<MigrationResult> {
    const result = await migrate(this.#pool);
    for (const queue of this.registry.queues()) await this.#ensureQueue(queue, this.queues);
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
    const messages: JobMessage<P>[] = payloads.map((payload) => ({ job: job.name, payload }));
    return queues.sendBatch(job.queue, messages, { delayMs: options.delayMs, runAt: options.runAt, headers: options.headers });
  }

  /**
   * A worker over `queues`, with its own small connection pool (two connections for claim
   * and ack, one for LISTEN, whatever its capacity). Call start() on it.
   */
  worker(options: WorkerOptions): Worker {
    const clientConfig = clientConfigOf(this.#ownsPool ? (this.#pool.options.connectionString as string) : this.#pool);
    const db = createPool(clientConfig, { max: 2, applicationName: "pgbus:worker" });
    const worker: Worker = new Worker(options, {
      db,
      clientConfig,
      registry: this.registry,
      logger: this.#logger,
      emitter: this.#emitter,
      onStopped: async () => {
        this.#workers.delete(worker);
        await db.end().catch(() => {});
      },
    });
    this.#workers.add(worker);
    return worker;
  }

  /** Stops the workers this bus built (gracefully) and closes its own pool. */
  async close(): Promise<void> {
    await Promise.all([...this.#workers].map((worker) => worker.stop()));
    if (this.#ownsPool) await this.#pool.end();
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
