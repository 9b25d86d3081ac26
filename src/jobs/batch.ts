import { randomUUID } from "node:crypto";
import type pg from "pg";
import { PgbusError, ValidationError } from "../errors.ts";
import { type Queryable, withTransaction } from "../db/queryable.ts";
import { ADD_TO_BATCH, BATCH_HEADER, CREATE_BATCH, SEAL_BATCH } from "../queue/batches-sql.ts";
import type { Headers } from "../queue/client.ts";
import { describeValue, serializeJson } from "../queue/payload.ts";
import { type JobDefinition, isJobDefinition } from "./define.ts";

/** What each callback job of a batch receives as its payload. */
export interface BatchResult<C = unknown> {
  batchId: string;
  /** Jobs of the batch that succeeded. */
  succeeded: number;
  /** Jobs of the batch that ended in the DLQ. */
  dead: number;
  /** Jobs in the batch: succeeded + dead. */
  total: number;
  /** The batch's context, or the callback's own `payload` when it gave one. */
  context: C;
}

/**
 * A callback: a job definition, or `{ job, payload }` where payload replaces the batch's
 * context for that callback. Any payload type: the job's schema, if it has one, checks the
 * BatchResult it gets (a JobDefinition<BatchResult<X>> is not assignable across contexts).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type BatchCallback = JobDefinition<any> | { job: JobDefinition<any>; payload?: unknown };

export interface BatchOptions<C = unknown> {
  /** Enqueued once every job of the batch finished (succeeded or dead). */
  onFinish?: BatchCallback;
  /** Enqueued once every job finished, if none is dead. */
  onSuccess?: BatchCallback;
  /** Enqueued once every job finished, if at least one is dead. */
  onDead?: BatchCallback;
  /** Given to every callback (JSON). Default null. */
  context?: C;
}

/** How a batch reaches the bus: its enqueue (validation, queue creation) inside a transaction, and its pool. */
export interface BatchDependencies {
  pool: pg.Pool;
  enqueueMany<P>(job: JobDefinition<P>, payloads: readonly P[], options: BatchEnqueueOptions & { client: Queryable }): Promise<string[]>;
  /** Makes a callback's queue (callbacks are enqueued by a trigger, which cannot make one). */
  ensureQueue(queue: string): Promise<void>;
  /** Registers a callback job with the bus, so the bus's workers can run it. */
  register(job: JobDefinition): void;
}

/** Enqueue options inside a batch: as bus.enqueue's, without uniqueKey (a job deduplicated away would never finish). */
export interface BatchEnqueueOptions {
  delayMs?: number;
  runAt?: Date;
  headers?: Headers;
  groupKey?: string;
  /** Inside the caller's transaction: the jobs and the batch's total commit (or roll back) with it. */
  client?: Queryable;
}

const CALLBACKS = ["onFinish", "onSuccess", "onDead"] as const;
const CALLBACK_KIND = { onFinish: "finish", onSuccess: "success", onDead: "dead" } as const;

interface StoredCallback {
  on: (typeof CALLBACK_KIND)[keyof typeof CALLBACK_KIND];
  queue: string;
  job: string;
  context?: unknown;
}

function callbackJob(name: (typeof CALLBACKS)[number], given: unknown): { job: JobDefinition; payload?: unknown } {
  const spec = isJobDefinition(given) ? { job: given } : (given as { job?: unknown; payload?: unknown } | null);
  if (!spec || typeof spec !== "object" || !isJobDefinition(spec.job)) {
    throw new ValidationError(
      "INVALID_OPTION",
      `batch option ${name} must be a job made with defineJob, or { job, payload? }, got ${describeValue(given)}`,
    );
  }
  return spec as { job: JobDefinition; payload?: unknown };
}

function storedCallback(name: (typeof CALLBACKS)[number], spec: { job: JobDefinition; payload?: unknown }): StoredCallback {
  const stored: StoredCallback = { on: CALLBACK_KIND[name], queue: spec.job.queue, job: spec.job.name };
  if ("payload" in spec && spec.payload !== undefined) {
    stored.context = JSON.parse(serializeJson(spec.payload, `payload of batch callback ${name}`));
  }
  return stored;
}

/**
 * A batch of jobs whose callbacks are enqueued once all of them finished. Jobs are added
 * with enqueue / enqueueMany (each call adds its jobs and the batch's total in one
 * transaction); `seal()` says no more will come. The batch finishes only once sealed, so
 * its callbacks cannot fire while jobs are still being added, however fast the first ones
 * run; an enqueue after seal() is refused (BATCH_SEALED). See docs/jobs.md, batches.
 */
export class Batch {
  readonly id = randomUUID();
  readonly #deps: BatchDependencies;
  readonly #context: string;
  readonly #callbacks: string;
  readonly #queues: string[];
  #prepared: Promise<void> | null = null;

  constructor(options: BatchOptions, deps: BatchDependencies) {
    if (typeof options !== "object" || options === null) {
      throw new ValidationError("INVALID_OPTION", `bus.batch needs an options object, got ${describeValue(options)}`);
    }
    const given = CALLBACKS.filter((name) => options[name] !== undefined).map((name) => [name, callbackJob(name, options[name])] as const);
    if (given.length === 0) {
      throw new ValidationError(
        "INVALID_OPTION",
        "bus.batch needs at least one of onFinish, onSuccess, onDead (a job made with defineJob)",
      );
    }
    const callbacks = given.map(([name, spec]) => storedCallback(name, spec));
    for (const [, spec] of given) deps.register(spec.job);
    this.#deps = deps;
    this.#context = serializeJson(options.context ?? null, "batch context");
    this.#callbacks = JSON.stringify(callbacks);
    this.#queues = [...new Set(callbacks.map((callback) => callback.queue))];
  }

  /** Adds one job to the batch; returns its message id. */
  async enqueue<P>(job: JobDefinition<P>, payload: P, options: BatchEnqueueOptions = {}): Promise<string> {
    const [id] = await this.enqueueMany(job, [payload], options);
    return id!;
  }

  /** Adds jobs to the batch in one statement; returns their ids in input order. */
  async enqueueMany<P>(job: JobDefinition<P>, payloads: readonly P[], options: BatchEnqueueOptions = {}): Promise<string[]> {
    if ("uniqueKey" in options) {
      throw new ValidationError(
        "INVALID_OPTION",
        "uniqueKey cannot be used inside a batch: a job enqueued as a duplicate would never finish",
      );
    }
    if (options.headers && BATCH_HEADER in options.headers) {
      throw new ValidationError("INVALID_OPTION", `the header ${BATCH_HEADER} is pgbus's own: it holds the batch id`);
    }
    await this.#prepare();
    const add = async (client: Queryable): Promise<string[]> => {
      // The total grows first, in the same transaction as the jobs: a refused (sealed) batch sends nothing.
      const added = await client.query(ADD_TO_BATCH, [this.id, this.#context, this.#callbacks, payloads.length]);
      if ((added.rowCount ?? 0) === 0) {
        throw new PgbusError("BATCH_SEALED", `batch ${this.id} is sealed: no job can be added after seal()`);
      }
      return this.#deps.enqueueMany(job, payloads, { ...options, client, headers: { ...options.headers, [BATCH_HEADER]: this.id } });
    };
    return options.client ? add(options.client) : withTransaction(this.#deps.pool, add);
  }

  /**
   * No more jobs: the batch finishes (and its callbacks are enqueued) once all of its jobs
   * have, or at once if they already have (an empty batch too). Idempotent.
   */
  async seal(): Promise<void> {
    await this.#prepare();
    await this.#deps.pool.query(CREATE_BATCH, [this.id, this.#context, this.#callbacks]);
    await this.#deps.pool.query(SEAL_BATCH, [this.id]);
  }

  #prepare(): Promise<void> {
    this.#prepared ??= (async () => {
      for (const queue of this.#queues) await this.#deps.ensureQueue(queue);
    })().catch((error: unknown) => {
      this.#prepared = null; // tried again by the next call
      throw error;
    });
    return this.#prepared;
  }
}
