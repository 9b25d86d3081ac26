import { ValidationError } from "../errors.ts";
import type { Queryable } from "../db/queryable.ts";
import type { JobDefinition } from "../jobs/define.ts";
import type { Headers } from "../queue/client.ts";
import { DEFAULT_MAX_PAYLOAD_BYTES, checkPayloadValue, serializeJson } from "../queue/payload.ts";
import { type Event, newEvent, toEventMessage, validateDelayMs } from "./event.ts";
import { validateRoutingKey } from "./routing.ts";
import { INSERT_OUTBOX } from "./sql.ts";
import { withPriority } from "../queue/priority.ts";

export interface OutboxWriteOptions {
  /**
   * The caller's transaction: a pg PoolClient, or any `{ query(text, values) }` (see
   * fromKysely, fromDrizzle, fromKnex). The row exists only if that transaction commits.
   * Default: the bus's pool (a transaction of its own, which gains nothing over a direct send).
   */
  client?: Queryable;
  /** Stored as the message headers, as given. */
  headers?: Headers;
  /**
   * The message becomes visible no sooner than this long after the row was written. Jobs
   * keep millisecond precision; events go through pgmq.send_topic, which counts whole seconds.
   */
  delayMs?: number;
}

export interface OutboxDependencies {
  /** The bus's pool: used when no client is given, and to create job queues. */
  pool: Queryable;
  maxPayloadBytes?: number;
  /** Registers the job and creates its queue (outside the caller's transaction: no DDL in it). */
  prepareJob(job: JobDefinition): Promise<void>;
  /** Rejects a payload the job's schema refuses, naming its index. */
  validatePayload(job: JobDefinition, payload: unknown, index: number): Promise<void>;
}

/**
 * The transactional outbox writer: jobs and events become rows of pgbus.outbox in the
 * caller's transaction, and an OutboxPoller moves committed rows to their queues. A
 * rolled-back transaction leaves nothing behind; a committed one is delivered exactly once.
 */
export class Outbox {
  readonly #deps: OutboxDependencies;

  constructor(deps: OutboxDependencies) {
    this.#deps = deps;
  }

  /** Writes an event to the outbox; returns the event (its id is final: handlers see the same one). */
  async publish<P>(routingKey: string, payload: P, options: OutboxWriteOptions = {}): Promise<Event<P>> {
    validateRoutingKey(routingKey);
    const delayMs = validateDelayMs(options.delayMs);
    checkPayloadValue(payload, `payload of event ${routingKey}`);
    const event = newEvent(routingKey, payload);
    const body = serializeJson(toEventMessage(event), `event ${routingKey}`, this.#maxBytes());
    const headers = options.headers === undefined ? null : `[${serializeJson(options.headers, `headers of event ${routingKey}`)}]`;
    await this.#db(options).query(INSERT_OUTBOX, ["event", routingKey, `[${body}]`, headers, delayMs]);
    return event;
  }

  /** Writes one job to the outbox; returns the outbox row id (the queue message id comes when the poller sends it). */
  async enqueue<P>(job: JobDefinition<P>, payload: P, options: OutboxWriteOptions = {}): Promise<string> {
    const [id] = await this.enqueueMany(job, [payload], options);
    return id!;
  }

  /** Writes many jobs of one kind in one statement; returns outbox row ids in input order. */
  async enqueueMany<P>(job: JobDefinition<P>, payloads: readonly P[], options: OutboxWriteOptions = {}): Promise<string[]> {
    if (!Array.isArray(payloads))
      throw new ValidationError("INVALID_OPTION", `outbox.enqueueMany needs an array of payloads for job ${job.name}`);
    const delayMs = validateDelayMs(options.delayMs);
    for (const [index, payload] of payloads.entries()) {
      checkPayloadValue(payload, `payload ${index} of job ${job.name}`);
      await this.#deps.validatePayload(job as JobDefinition, payload, index);
    }
    if (payloads.length === 0) return [];
    const bodies = payloads.map((payload, index) =>
      serializeJson({ job: job.name, payload }, `payload ${index} of job ${job.name}`, this.#maxBytes()),
    );
    const given = withPriority(options.headers, job.priority); // the job's priority, as bus.enqueue gives it
    const header = given === undefined ? null : serializeJson(given, `headers of job ${job.name}`);
    await this.#deps.prepareJob(job as JobDefinition);
    const headers = header === null ? null : `[${new Array<string>(payloads.length).fill(header).join(",")}]`;
    const result = await this.#db(options).query(INSERT_OUTBOX, ["job", job.queue, `[${bodies.join(",")}]`, headers, delayMs]);
    return (result.rows as Array<{ id: string | number }>).map((row) => String(row.id));
  }

  #db(options: OutboxWriteOptions): Queryable {
    const client = options.client ?? this.#deps.pool;
    if (typeof client?.query !== "function") {
      throw new ValidationError(
        "INVALID_OPTION",
        `outbox client must have query(text, values) (a pg PoolClient or an adapter such as fromKysely), got ${String(client)}`,
      );
    }
    return client;
  }

  #maxBytes(): number {
    return this.#deps.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
  }
}
