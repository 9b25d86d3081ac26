import { type ErrorRecord, ValidationError } from "../errors.ts";
import { withMigrateHints } from "../db/pg-errors.ts";
import { type NamedStatement, type Queryable, runStatement } from "../db/queryable.ts";
import { deadLetterHeaders } from "./dead-letter.ts";
import { MAX_QUEUE_NAME_WITH_DLQ, dlqName, validateQueueName } from "./names.ts";
import { DEFAULT_MAX_PAYLOAD_BYTES, serializeJson } from "./payload.ts";
import * as sql from "./sql.ts";

export type MessageId = string | number | bigint;
export type Headers = Record<string, unknown>;

export interface QueueMessage<T = unknown> {
  /** bigint id, as a string. */
  msgId: string;
  readCt: number;
  enqueuedAt: Date;
  lastReadAt: Date | null;
  vt: Date;
  message: T;
  headers: Headers | null;
}

export interface SendOptions {
  /** Invisible for this long after the send. */
  delayMs?: number;
  /** Invisible until this time (whichever of delayMs and runAt is later wins). */
  runAt?: Date;
  headers?: Headers;
}

export interface SendBatchOptions extends Omit<SendOptions, "headers"> {
  /** Headers for every message, or one entry per message. */
  headers?: Headers | Headers[];
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

export interface MessageRow {
  msg_id: string;
  read_ct: number;
  enqueued_at: Date;
  last_read_at: Date | null;
  vt: Date;
  message: unknown;
  headers: Headers | null;
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
   * that wakes workers. Idempotent; a queue that exists is left alone without taking any
   * table lock, so calling it on every start is cheap.
   */
  async createQueue(name: string, options: { deadLetterQueue?: boolean } = {}): Promise<void> {
    const withDlq = options.deadLetterQueue ?? true;
    validateQueueName(name, withDlq ? MAX_QUEUE_NAME_WITH_DLQ : undefined);
    for (const queue of withDlq ? [name, dlqName(name)] : [name]) {
      if (await this.queueExists(queue)) continue;
      await this.#db.query(sql.CREATE_QUEUE, [queue]);
      await this.#db.query(sql.ENABLE_NOTIFY, [queue]);
      await this.#db.query(sql.TUNE_QUEUE_TABLE, [queue]);
    }
  }

  /** Drops the queue (and its DLQ unless told not to); false when it did not exist. */
  async dropQueue(name: string, options: { deadLetterQueue?: boolean } = {}): Promise<boolean> {
    validateQueueName(name);
    const result = await this.#db.query(sql.DROP_QUEUE, [name]);
    if (options.deadLetterQueue ?? true) {
      const dlq = dlqName(name);
      if (dlq.length <= 47) await this.#db.query(sql.DROP_QUEUE, [dlq]);
    }
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
    const headers = options.headers === undefined ? null : serializeJson(options.headers, `headers for queue ${queue}`);
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
    const headers = batchHeaders(options.headers, messages.length, queue);
    const [delayMs, runAt] = visibility(options);
    const rows = await this.#run<{ msg_id: string }>(sql.sendMany(queue), [`[${bodies.join(",")}]`, headers, delayMs, runAt]);
    return rows.map((row) => row.msg_id);
  }

  /** Up to `qty` visible messages, invisible to other readers for `vtSeconds`. */
  async read<T = unknown>(queue: string, vtSeconds: number, qty: number): Promise<QueueMessage<T>[]> {
    validateQueueName(queue);
    requireNumber("vtSeconds", vtSeconds, 0);
    requireInteger("qty", qty, 1);
    const rows = await this.#run<MessageRow>(sql.readBatch(queue), [vtSeconds, qty]);
    return rows.map(toMessage<T>).sort(byMessageId);
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
    const headers = serializeJson(deadLetterHeaders(queue, String(id), { reason: "", ...error }), "dead-letter headers");
    const rows = await this.#run<{ msg_id: string }>(sql.moveToDeadLetter(queue, dlqName(queue)), [
      toId(id),
      headers,
      queue,
      claimedReadCt ?? null,
    ]);
    return rows[0]?.msg_id ?? null;
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

  #run<R>(statement: NamedStatement, values: unknown[]): Promise<R[]> {
    return runStatement<R>(this.#db, this.#options.prepared, statement, values);
  }
}

export function toMessage<T>(row: MessageRow): QueueMessage<T> {
  return {
    msgId: row.msg_id,
    readCt: row.read_ct,
    enqueuedAt: row.enqueued_at,
    lastReadAt: row.last_read_at,
    vt: row.vt,
    message: row.message as T,
    headers: row.headers,
  };
}

/** Oldest first: ids are bigint strings, so shorter is smaller. */
export function byMessageId(a: { msgId: string }, b: { msgId: string }): number {
  return a.msgId.length - b.msgId.length || (a.msgId < b.msgId ? -1 : a.msgId > b.msgId ? 1 : 0);
}

function toId(id: MessageId): string {
  const text = String(id);
  if (!/^[1-9][0-9]{0,18}$/.test(text)) {
    throw new ValidationError("INVALID_OPTION", `invalid message id ${JSON.stringify(text)}: ids are positive integers`);
  }
  return text;
}

function visibility(options: { delayMs?: number; runAt?: Date }): [number, Date | null] {
  const delayMs = options.delayMs ?? 0;
  requireNumber("delayMs", delayMs, 0);
  if (options.runAt !== undefined && !(options.runAt instanceof Date && Number.isFinite(options.runAt.getTime()))) {
    throw new ValidationError("INVALID_OPTION", `runAt must be a valid Date, got ${String(options.runAt)}`);
  }
  return [delayMs, options.runAt ?? null];
}

function batchHeaders(headers: Headers | Headers[] | undefined, count: number, queue: string): string | null {
  if (headers === undefined) return null;
  if (Array.isArray(headers)) {
    if (headers.length !== count) {
      throw new ValidationError(
        "INVALID_OPTION",
        `headers has ${headers.length} entries for ${count} messages; give one per message or a single object`,
      );
    }
    return serializeJson(headers, `headers for queue ${queue}`);
  }
  const one = serializeJson(headers, `headers for queue ${queue}`);
  return `[${new Array<string>(count).fill(one).join(",")}]`;
}

function requireNumber(name: string, value: number, min: number): void {
  if (typeof value !== "number" || !Number.isFinite(value) || value < min) {
    throw new ValidationError("INVALID_OPTION", `${name} must be a finite number >= ${min}, got ${String(value)}`);
  }
}

function requireInteger(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) {
    throw new ValidationError("INVALID_OPTION", `${name} must be an integer >= ${min}, got ${String(value)}`);
  }
}
