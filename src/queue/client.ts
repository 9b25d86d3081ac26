import { type ErrorRecord, PgbusError, ValidationError, storableErrorRecord } from "../errors.ts";
import { withMigrateHints } from "../db/pg-errors.ts";
import { asQueueNotFound } from "./missing.ts";
import { batchHeaders, partitionOptions, requireInteger, requireNumber, toId, visibility, withGroup } from "./client-args.ts";
import { type NamedStatement, type Queryable, runStatement } from "../db/queryable.ts";
import { isDataError } from "../db/pg-errors.ts";
import { deadLetterHeaders } from "./dead-letter.ts";
import { MAX_QUEUE_NAME_WITH_DLQ, dlqName, validateQueueName } from "./names.ts";
import { DEFAULT_MAX_PAYLOAD_BYTES, serializeJson, storableJson } from "./payload.ts";
import * as sql from "./sql.ts";
import { type MessageRow, type QueueMessage, byClaimOrder, toMessage } from "./messages.ts";
import { ENABLE_UNIQUE_KEYS, type UniqueKeyStore } from "./unique-sql.ts";
import { type UniqueFor, sendUniqueBatch, validateUniqueFor } from "./unique.ts";
import { priorityOf } from "./priority.ts";
import { PARTMAN_SCHEMA, UNTUNED_PARTITIONS, keepQueuePartitions, tunePartition } from "./admin-sql.ts";

export type MessageId = string | number | bigint;
export type Headers = Record<string, unknown>;

export { FIFO_GROUP_HEADER } from "./client-args.ts";
export { type MessageRow, type QueueMessage, byClaimOrder, byMessageId, toMessage } from "./messages.ts";

export interface SendOptions {
  /** Invisible for this long after the send. */
  delayMs?: number;
  /** Invisible until this time (whichever of delayMs and runAt is later wins). */
  runAt?: Date;
  headers?: Headers;
  /**
   * FIFO group (the header `x-pgmq-group`): readGrouped hands out the messages of one group
   * one batch at a time, in order, while other groups go in parallel.
   */
  groupKey?: string;
}

export interface SendBatchOptions extends Omit<SendOptions, "headers"> {
  /** Headers for every message, or one entry per message. */
  headers?: Headers | Headers[];
  /**
   * One entry per message (null or undefined: none). A message whose job (the body's `job`)
   * and key are already in the queue is not inserted; its entry in the result is the id of
   * the message holding the key. The queue's unique-key index is made on first use.
   */
  uniqueKeys?: ReadonlyArray<string | null | undefined>;
  /**
   * How long the keys are held: "until_done" (default) while the message is in the queue,
   * waiting or running; "queued" only until a worker first claims it. See docs/jobs.md.
   */
  uniqueFor?: UniqueFor;
}

export interface CreateQueueOptions {
  /** Also create `<name>_dlq` (default true). The DLQ is always a plain, logged queue. */
  deadLetterQueue?: boolean;
  /**
   * An UNLOGGED queue table (pgmq.create_unlogged): no WAL for sends, claims and acks, so
   * faster under high volume, but its messages are lost on a crash or an unclean restart
   * of PostgreSQL and it is not replicated to standbys. The archive stays logged.
   */
  unlogged?: boolean;
  /**
   * A queue partitioned by pg_partman (pgmq.create_partitioned; the extension must be
   * installed). `interval`: a number (that many msg ids per partition) or a time interval
   * ("1 day"); `retention`: the same kind, after which whole partitions are dropped by
   * pg_partman's maintenance (which `pgbus start`'s maintenance role runs) instead of
   * rows being deleted.
   */
  partitioned?: { interval: number | string; retention: number | string };
}

export interface QueueInfo {
  name: string;
  createdAt: Date;
}

export interface QueueMetrics {
  queueName: string;
  /** Messages in the queue table, visible or not. */
  queueLength: number;
  /** Messages a read would get now. */
  visibleLength: number;
  newestMsgAgeSec: number | null;
  oldestMsgAgeSec: number | null;
  /** Messages ever sent to the queue. */
  totalMessages: number;
  scrapeTime: Date;
}

export interface QueueClientOptions {
  /** Let pg prepare statements by name (needs a pg Pool/Client, not a bare query adapter). */
  prepared?: boolean;
  maxPayloadBytes?: number;
}

/**
 * Typed PGMQ operations on one database handle: a pool, or a client inside the caller's
 * transaction (`withClient`). Reads and writes the pgmq tables directly with prepared
 * statements; creating and dropping go through pgmq's functions so the extension, when
 * installed, stays the owner of its catalog.
 */
export class QueueClient {
  readonly #db: Queryable;
  readonly #options: Required<QueueClientOptions>;
  /** The key store of each `mode:queue` this client has enabled (withClient starts afresh: a rolled-back index or trigger must be made again). */
  readonly #uniqueKeyStores = new Map<string, UniqueKeyStore>();

  constructor(db: Queryable, options: QueueClientOptions = {}) {
    this.#db = withMigrateHints(db); // "relation pgmq.meta does not exist" says to migrate
    this.#options = { prepared: options.prepared ?? false, maxPayloadBytes: options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES };
  }

  /** The same client on another handle, e.g. the PoolClient of an open transaction. */
  withClient(db: Queryable): QueueClient {
    return new QueueClient(db, { ...this.#options, prepared: false });
  }

  /**
   * Creates the queue and its `<name>_dlq` (unless told not to), with the insert trigger
   * that wakes workers, in one statement. Idempotent and safe under any concurrency: every
   * creation and drop of a queue waits on that queue's lock (the one PGMQ's own create and
   * drop_queue take), so many processes, callers' transactions and plain PGMQ clients can
   * create the same queue at once. A queue that exists is left alone without taking any
   * lock, so calling it on every start is cheap. Inside a transaction, a queue this call
   * creates exists only if that transaction commits, and other creators of the same queue
   * wait until it ends.
   */
  async createQueue(name: string, options: CreateQueueOptions = {}): Promise<void> {
    const withDlq = options.deadLetterQueue ?? true;
    validateQueueName(name, withDlq ? MAX_QUEUE_NAME_WITH_DLQ : undefined);
    const partitioned = options.partitioned === undefined ? null : partitionOptions(options.partitioned);
    if (options.unlogged !== undefined && typeof options.unlogged !== "boolean") {
      throw new ValidationError("INVALID_OPTION", `unlogged must be a boolean, got ${String(options.unlogged)}`);
    }
    if (partitioned && options.unlogged) {
      throw new ValidationError("INVALID_OPTION", "a queue is either unlogged or partitioned, not both");
    }
    // An unlogged or partitioned table is made first by PGMQ's own function (under the same
    // per-queue lock, and a no-op when it exists); ensure_queue then completes the queue
    // around whatever table is there: archive, DLQ, insert trigger, meta row.
    if (partitioned && !(await this.queueExists(name))) await this.#createPartitioned(name, partitioned);
    else if (options.unlogged && !(await this.queueExists(name))) await this.#db.query(sql.CREATE_UNLOGGED_QUEUE, [name]);
    await this.#db.query(sql.ENSURE_QUEUE, [name, withDlq]);
  }
  async #createPartitioned(name: string, partitioned: { interval: string; retention: string }): Promise<void> {
    await this.#db.query(sql.CREATE_PARTITIONED_QUEUE, [name, partitioned.interval, partitioned.retention]);
    // Retention applies to the archive only: pg_partman would drop a queue partition with
    // unprocessed messages in it. Drained queue partitions go in runPartitionMaintenance.
    const partman = (await this.#db.query(PARTMAN_SCHEMA)).rows[0] as { schema: string } | undefined;
    if (partman) await this.#db.query(keepQueuePartitions(partman.schema), [`pgmq.q_${name}`]);
    const untuned = await this.#db.query(UNTUNED_PARTITIONS, [`pgmq.q_${name}`]);
    for (const { child } of untuned.rows as Array<{ child: string }>) await this.#db.query(tunePartition(child));
  }

  /** Drops the queue and its DLQ (unless told not to) in one statement; false when the queue did not exist. */
  async dropQueue(name: string, options: { deadLetterQueue?: boolean } = {}): Promise<boolean> {
    validateQueueName(name);
    const result = await this.#db.query(sql.DROP_QUEUE, [name, options.deadLetterQueue ?? true]);
    return (result.rows[0] as { dropped: boolean }).dropped;
  }

  /** Deletes every message in the queue; returns how many. */
  async purgeQueue(name: string): Promise<number> {
    const rows = await this.#run<{ count: number }>(sql.purge(validateQueueName(name)), []);
    return rows[0]?.count ?? 0;
  }

  async listQueues(): Promise<QueueInfo[]> {
    const result = await this.#db.query(sql.LIST_QUEUES);
    return (result.rows as Array<{ queue_name: string; created_at: Date }>).map((row) => ({
      name: row.queue_name,
      createdAt: row.created_at,
    }));
  }

  async queueExists(name: string): Promise<boolean> {
    const result = await this.#db.query(sql.QUEUE_EXISTS, [validateQueueName(name)]);
    return result.rows.length > 0;
  }

  async send(queue: string, message: unknown, options: SendOptions = {}): Promise<string> {
    validateQueueName(queue);
    const body = serializeJson(message, `message for queue ${queue}`, this.#options.maxPayloadBytes);
    const merged = withGroup(options.headers, options.groupKey);
    const headers = merged === undefined ? null : serializeJson(merged, `headers for queue ${queue}`);
    const [delayMs, runAt] = visibility(options);
    const rows = await this.#run<{ msg_id: string }>(sql.sendOne(queue), [body, headers, delayMs, runAt]);
    return rows[0]!.msg_id;
  }

  /** Sends every message in one statement (one round trip); returns ids in input order. */
  async sendBatch(queue: string, messages: readonly unknown[], options: SendBatchOptions = {}): Promise<string[]> {
    validateQueueName(queue);
    if (messages.length === 0) return [];
    const bodies = messages.map((message, index) =>
      serializeJson(message, `message ${index} for queue ${queue}`, this.#options.maxPayloadBytes),
    );
    const [delayMs, runAt] = visibility(options);
    if (options.uniqueKeys) {
      const keys = options.uniqueKeys;
      if (keys.length !== messages.length) {
        throw new ValidationError(
          "INVALID_OPTION",
          `uniqueKeys has ${keys.length} entries for ${messages.length} messages; give one per message`,
        );
      }
      if (Array.isArray(options.headers)) batchHeaders(options.headers, messages.length, queue); // checks the count
      const headers = messages.map(
        (_, index) => withGroup(Array.isArray(options.headers) ? options.headers[index] : options.headers, options.groupKey) ?? null,
      );
      const uniqueFor = validateUniqueFor(options.uniqueFor);
      const cacheKey = `${uniqueFor}:${queue}`;
      let store = this.#uniqueKeyStores.get(cacheKey);
      if (store === undefined) {
        const enabled = await this.#enableUniqueKeys(queue, uniqueFor);
        if (enabled === null) throw new PgbusError("QUEUE_NOT_FOUND", `queue ${queue} does not exist`);
        this.#uniqueKeyStores.set(cacheKey, (store = enabled));
      }
      return sendUniqueBatch((statement, values) => this.#run(statement, values), {
        queue,
        uniqueFor,
        store,
        messages,
        bodies,
        headers,
        keys,
        delayMs,
        runAt,
      });
    }
    const headers = batchHeaders(options.headers, messages.length, queue, options.groupKey);
    const rows = await this.#run<{ msg_id: string }>(sql.sendMany(queue), [`[${bodies.join(",")}]`, headers, delayMs, runAt]);
    return rows.map((row) => row.msg_id);
  }

  /**
   * Creates the queue's unique-key index if it is missing, or on a partitioned queue the
   * triggers that release its keys (once per queue; cheap when they exist). False when the
   * queue's table is not visible on this handle.
   */
  async enableUniqueKeys(queue: string, uniqueFor: UniqueFor = "until_done"): Promise<boolean> {
    return (await this.#enableUniqueKeys(validateQueueName(queue), validateUniqueFor(uniqueFor))) !== null;
  }
  async #enableUniqueKeys(queue: string, uniqueFor: UniqueFor): Promise<UniqueKeyStore | null> {
    const result = await this.#db.query(ENABLE_UNIQUE_KEYS[uniqueFor], [queue]);
    const row = result.rows[0] as { enabled: boolean; partitioned: boolean };
    return row.enabled ? (row.partitioned ? "table" : "index") : null;
  }

  /** Up to `qty` visible messages, invisible to other readers for `vtSeconds`. */
  async read<T = unknown>(queue: string, vtSeconds: number, qty: number): Promise<QueueMessage<T>[]> {
    validateQueueName(queue);
    requireNumber("vtSeconds", vtSeconds, 0);
    requireInteger("qty", qty, 1);
    const rows = await this.#run<MessageRow>(sql.readBatch(queue), [vtSeconds, qty]);
    return rows
      .map((row) => ({ priority: priorityOf(row.headers), msgId: row.msg_id, message: toMessage<T>(row) }))
      .sort(byClaimOrder)
      .map((entry) => entry.message);
  }

  /**
   * Claims like read(), but by FIFO group (pgmq.read_grouped): only groups whose oldest
   * message is visible, so a group's messages are handed out in order and never to two
   * readers at once. By default it fills the batch from the group with the oldest head
   * first (SQS FIFO); `roundRobin` takes the first message of each group, then the second...
   */
  async readGrouped<T = unknown>(
    queue: string,
    vtSeconds: number,
    qty: number,
    options: { roundRobin?: boolean } = {},
  ): Promise<QueueMessage<T>[]> {
    validateQueueName(queue);
    requireInteger("vtSeconds", vtSeconds, 0);
    requireInteger("qty", qty, 1);
    const result = await this.#db.query(sql.readGrouped(options.roundRobin ?? false), [queue, vtSeconds, qty]);
    return (result.rows as MessageRow[]).map(toMessage<T>);
  }

  /** Reads and deletes the oldest visible message. */
  async pop<T = unknown>(queue: string): Promise<QueueMessage<T> | null> {
    const rows = await this.#run<MessageRow>(sql.popOne(validateQueueName(queue)), []);
    return rows[0] ? toMessage<T>(rows[0]) : null;
  }

  /** Makes the message visible again `vtSeconds` from now (0 = now); null if it is gone. */
  async setVt<T = unknown>(queue: string, id: MessageId, vtSeconds: number): Promise<QueueMessage<T> | null> {
    validateQueueName(queue);
    requireNumber("vtSeconds", vtSeconds, 0);
    const rows = await this.#run<MessageRow>(sql.setVisibility(queue), [[toId(id)], vtSeconds]);
    return rows[0] ? toMessage<T>(rows[0]) : null;
  }

  /** Same as setVt for many messages in one statement; returns the ids still in the queue. */
  async setVtMany(queue: string, ids: readonly MessageId[], vtSeconds: number): Promise<string[]> {
    validateQueueName(queue);
    requireNumber("vtSeconds", vtSeconds, 0);
    if (ids.length === 0) return [];
    const rows = await this.#run<MessageRow>(sql.setVisibility(queue), [ids.map(toId), vtSeconds]);
    return rows.map((row) => row.msg_id);
  }

  /** Moves messages to the archive table (`a_<queue>`, with archived_at). */
  archive(queue: string, id: MessageId): Promise<boolean>;
  archive(queue: string, ids: readonly MessageId[]): Promise<string[]>;
  async archive(queue: string, idOrIds: MessageId | readonly MessageId[]): Promise<boolean | string[]> {
    return this.#removeMessages(sql.archiveMany(validateQueueName(queue)), idOrIds);
  }

  delete(queue: string, id: MessageId): Promise<boolean>;
  delete(queue: string, ids: readonly MessageId[]): Promise<string[]>;
  async delete(queue: string, idOrIds: MessageId | readonly MessageId[]): Promise<boolean | string[]> {
    return this.#removeMessages(sql.deleteMany(validateQueueName(queue)), idOrIds);
  }

  /**
   * Moves a message to `<queue>_dlq` with its error in the headers, in one statement;
   * returns the id in the DLQ, or null if the message was no longer in the queue.
   */
  async moveToDeadLetterQueue(
    queue: string,
    id: MessageId,
    error: ErrorRecord & { reason?: string },
    /** Only if the message still has this read_ct, i.e. no other claim took it since. */
    claimedReadCt?: number,
  ): Promise<string | null> {
    validateQueueName(queue);
    const record = storableErrorRecord({ reason: "", ...error });
    const statement = sql.moveToDeadLetter(queue, dlqName(queue));
    const move = async (headers: Headers) => {
      const rows = await this.#run<{ msg_id: string }>(statement, [toId(id), storableJson(headers), queue, claimedReadCt ?? null]);
      return rows[0]?.msg_id ?? null;
    };
    try {
      return await move(deadLetterHeaders(queue, String(id), record));
    } catch (cause) {
      // The record is storable by construction; should the insert still refuse it (a data
      // or size error), the message must reach the DLQ anyway, with the bare facts.
      if (!isDataError(cause)) throw cause;
      const reason = cause instanceof Error ? cause.message : String(cause);
      return move(
        deadLetterHeaders(queue, String(id), {
          reason: record.reason,
          name: record.name.slice(0, 200),
          message: `the error record could not be stored (${reason.slice(0, 200)}); its message is lost`,
        }),
      );
    }
  }

  async metrics(queue: string): Promise<QueueMetrics> {
    const rows = await this.#run<Record<string, unknown>>(sql.metrics(validateQueueName(queue)), []);
    const row = rows[0]!;
    return {
      queueName: queue,
      queueLength: Number(row.queue_length),
      visibleLength: Number(row.queue_visible_length),
      newestMsgAgeSec: row.newest_msg_age_sec === null ? null : Number(row.newest_msg_age_sec),
      oldestMsgAgeSec: row.oldest_msg_age_sec === null ? null : Number(row.oldest_msg_age_sec),
      totalMessages: Number(row.total_messages),
      scrapeTime: row.scrape_time as Date,
    };
  }

  async #removeMessages(statement: NamedStatement, idOrIds: MessageId | readonly MessageId[]): Promise<boolean | string[]> {
    if (Array.isArray(idOrIds)) {
      if (idOrIds.length === 0) return [];
      const rows = await this.#run<{ msg_id: string }>(statement, [idOrIds.map(toId)]);
      return rows.map((row) => row.msg_id);
    }
    const rows = await this.#run<{ msg_id: string }>(statement, [[toId(idOrIds as MessageId)]]);
    return rows.length > 0;
  }

  /** Every statement on a queue's tables: a queue that is not there is QUEUE_NOT_FOUND, naming it. */
  #run<R>(statement: NamedStatement, values: unknown[]): Promise<R[]> {
    return runStatement<R>(this.#db, this.#options.prepared, statement, values).catch((error: unknown) => {
      throw asQueueNotFound(error);
    });
  }
}
