import { isUndefinedTable } from "../db/pg-errors.ts";
import { isQueueGone, queueNotFound } from "./missing.ts";
import type { Queryable } from "../db/queryable.ts";
import { PgbusError, ValidationError } from "../errors.ts";
import { QueueClient, type MessageId } from "./client.ts";
import { dlqName, isDlqName, validateQueueName } from "./names.ts";
import { UNIQUE_KEY_HEADER, UNIQUE_QUEUED_KEY_HEADER } from "./unique-sql.ts";
import * as sql from "./admin-sql.ts";
import { DEAD_LETTER_HEADERS, type DeadLetterInfo, parseDeadLetterHeaders } from "./dead-letter.ts";
import { readJobEnvelope } from "./envelope.ts";
import { pausedQueues } from "./pause.ts";

/**
 * What `pgbus status`, `pgbus queues` and `pgbus dlq` read and change: queue depths and
 * throughput, and the dead letters of a queue.
 */

export interface QueueOverview {
  name: string;
  /** Messages in the queue, visible or not (in flight, delayed, waiting for a retry). */
  depth: number;
  /** Messages a read would get now. */
  visible: number;
  oldestAgeSec: number | null;
  /** Messages archived in the last minute: the queue's throughput (ackMode "delete" queues show 0). */
  archivedLastMinute: number;
  /** Messages in `<name>_dlq`; null when it has none. */
  dlqDepth: number | null;
  /** Workers do not claim from it (bus.pauseQueue, `pgbus queues pause`). */
  paused: boolean;
}

export interface DeadLetter extends DeadLetterInfo {
  id: string;
  /** The job name, when the message is a pgbus job. */
  job: string | null;
  message: unknown;
  enqueuedAt: Date;
}

/** Which dead letters a retry or discard acts on. */
export type DeadLetterSelection = { ids: MessageId[] } | { all: true };

/** Every queue except DLQs that belong to a queue, with their depths and throughput. */
export async function queueOverview(db: Queryable): Promise<QueueOverview[]> {
  const client = new QueueClient(db);
  const names = (await client.listQueues()).map((queue) => queue.name);
  const existing = new Set(names);
  // A `<name>_dlq` is shown as its queue's DLQ depth; one without its queue is a queue of its own.
  const shown = names.filter((name) => !(isDlqName(name) && existing.has(name.slice(0, -4))));
  const paused = new Set((await pausedQueues(db)).map((entry) => entry.queue));
  const overview: QueueOverview[] = [];
  for (const name of shown) {
    try {
      const metrics = await client.metrics(name);
      const archived = await db.query(sql.archivedSince(name), [60]);
      const dlq = dlqName(name);
      const dlqDepth = existing.has(dlq) ? (await client.metrics(dlq)).queueLength : null;
      overview.push({
        name,
        depth: metrics.queueLength,
        visible: metrics.visibleLength,
        oldestAgeSec: metrics.oldestMsgAgeSec,
        archivedLastMinute: (archived.rows[0] as { count: number }).count,
        dlqDepth,
        paused: paused.has(name),
      });
    } catch (error) {
      // Dropped since it was listed: it is no longer a queue to show.
      if (!isQueueGone(error)) throw error;
    }
  }
  return overview;
}

/** The DLQ of `queue` (a queue name, or its `_dlq` name); throws QUEUE_NOT_FOUND when it does not exist. */
async function deadLetterQueueOf(db: Queryable, queue: string): Promise<{ queue: string; dlq: string }> {
  const base = isDlqName(queue) ? queue.slice(0, -4) : queue;
  validateQueueName(base);
  const client = new QueueClient(db);
  if (!(await client.queueExists(base))) {
    const known = (await client.listQueues()).map((q) => q.name).filter((name) => !isDlqName(name));
    throw new PgbusError("QUEUE_NOT_FOUND", `queue ${JSON.stringify(base)} does not exist; queues: ${known.join(", ") || "(none)"}`);
  }
  const dlq = dlqName(base);
  if (!(await client.queueExists(dlq)))
    throw new PgbusError("QUEUE_NOT_FOUND", `queue ${JSON.stringify(base)} has no dead-letter queue ${dlq}`);
  return { queue: base, dlq };
}

/** Runs a statement on a queue's tables: a queue dropped since deadLetterQueueOf found it is QUEUE_NOT_FOUND, as if it had not been there. */
async function onQueue(db: Queryable, queue: string, text: string, values: unknown[]): Promise<{ rows: unknown[] }> {
  try {
    return await db.query(text, values);
  } catch (error) {
    if (isUndefinedTable(error)) throw queueNotFound(queue, error);
    throw error;
  }
}

interface DeadLetterRow {
  msg_id: string;
  read_ct: number;
  enqueued_at: Date;
  message: unknown;
  headers: Record<string, unknown> | null;
}

function toDeadLetter(row: DeadLetterRow): DeadLetter {
  return {
    id: row.msg_id,
    job: readJobEnvelope(row.message)?.job ?? null,
    message: row.message,
    ...parseDeadLetterHeaders(row.headers),
    enqueuedAt: row.enqueued_at,
  };
}

export async function listDeadLetters(db: Queryable, queue: string, limit = 100): Promise<DeadLetter[]> {
  if (!Number.isInteger(limit) || limit < 1)
    throw new ValidationError("INVALID_OPTION", `limit must be an integer >= 1, got ${String(limit)}`);
  const { dlq } = await deadLetterQueueOf(db, queue);
  const result = await onQueue(db, queue, sql.listDeadLetters(dlq), [limit]);
  return (result.rows as DeadLetterRow[]).map(toDeadLetter);
}

function selectionValue(selection: DeadLetterSelection): string[] | null {
  if ("all" in selection) return null;
  if (selection.ids.length === 0) throw new ValidationError("INVALID_OPTION", "give message ids, or all");
  return selection.ids.map((id) => {
    const text = String(id);
    if (!/^[1-9][0-9]{0,18}$/.test(text))
      throw new ValidationError("INVALID_OPTION", `invalid message id ${JSON.stringify(text)}: ids are positive integers`);
    return text;
  });
}

/** Moves dead letters back to their queue (one statement); `moved` are their DLQ ids, `requeued` the new ones. */
export async function retryDeadLetters(
  db: Queryable,
  queue: string,
  selection: DeadLetterSelection,
): Promise<{ moved: string[]; requeued: string[] }> {
  const ids = selectionValue(selection);
  const names = await deadLetterQueueOf(db, queue);
  // Retried without its unique key (either mode): a live message may hold it by now, and the retry must not fail on it.
  const result = await onQueue(db, queue, sql.retryDeadLetters(names.queue, names.dlq), [
    ids,
    [...DEAD_LETTER_HEADERS, UNIQUE_KEY_HEADER, UNIQUE_QUEUED_KEY_HEADER],
  ]);
  const row = result.rows[0] as { from_ids: string[]; to_ids: string[] };
  return { moved: row.from_ids, requeued: row.to_ids };
}

/** Deletes dead letters for good; returns the ids deleted. */
export async function discardDeadLetters(db: Queryable, queue: string, selection: DeadLetterSelection): Promise<string[]> {
  const ids = selectionValue(selection);
  const { dlq } = await deadLetterQueueOf(db, queue);
  const result = await onQueue(db, queue, sql.discardDeadLetters(dlq), [ids]);
  return (result.rows[0] as { ids: string[] }).ids;
}

/**
 * Runs pg_partman's maintenance on every partitioned pgmq table (queue and archive tables of
 * queues made with `createQueue(name, { partitioned })` or pgmq.create_partitioned): creates
 * the partitions ahead and drops whole archive partitions past their retention, instead of
 * deleting rows. A queue table's partitions are dropped only once they are empty and wholly
 * older than its oldest message (pgbus's queues keep no retention on the queue table, so
 * nothing unprocessed is ever dropped), and new queue partitions get a plain queue's
 * storage settings. Returns how many partitions it dropped that way;
 * 0 when pg_partman is not installed.
 */
export async function runPartitionMaintenance(db: Queryable): Promise<number> {
  const installed = await db.query(sql.PARTMAN_SCHEMA);
  const schema = (installed.rows[0] as { schema: string } | undefined)?.schema;
  if (schema === undefined) return 0;
  const parents = await db.query(sql.partmanParents(schema));
  let dropped = 0;
  for (const { parent_table: parent } of parents.rows as Array<{ parent_table: string }>) {
    await db.query(sql.partmanMaintain(schema), [parent]);
    if (/^pgmq\.("?)q_/.test(parent)) {
      await tunePartitions(db, parent);
      dropped += await dropDrainedPartitions(db, schema, parent);
    }
  }
  return dropped;
}

/**
 * Gives a partitioned queue's partitions the storage settings of a plain pgbus queue
 * (free room in each page so a claim's UPDATE stays on its page, eager autovacuum).
 */
export async function tunePartitions(db: Queryable, parent: string): Promise<void> {
  const untuned = await db.query(sql.UNTUNED_PARTITIONS, [quoteQualified(parent)]);
  for (const { child } of untuned.rows as Array<{ child: string }>) await db.query(sql.tunePartition(child));
}

async function dropDrainedPartitions(db: Queryable, schema: string, parent: string): Promise<number> {
  const partitions = (await db.query(sql.queuePartitions(schema), [parent])).rows as Array<{
    child: string;
    end_id: string | null;
    end_time: Date | null;
  }>;
  const bound = (await db.query(sql.queueLowerBound(quoteQualified(parent)), [parent])).rows[0] as { min_id: string; min_time: Date };
  let dropped = 0;
  for (const partition of partitions.slice(0, -1)) {
    const below =
      partition.end_id !== null
        ? BigInt(partition.end_id) < BigInt(bound.min_id)
        : partition.end_time !== null && partition.end_time.getTime() <= bound.min_time.getTime();
    if (!below) break; // oldest first: the rest are newer
    const before = await db.query("SELECT to_regclass($1) AS t", [partition.child]);
    await db.query(sql.dropEmptyPartition(partition.child));
    const after = await db.query("SELECT to_regclass($1) AS t", [partition.child]);
    if ((before.rows[0] as { t: unknown }).t && !(after.rows[0] as { t: unknown }).t) dropped++;
  }
  return dropped;
}

/** `pgmq.q_x` as pg_partman stores it, as a quoted qualified name. */
function quoteQualified(name: string): string {
  const dot = name.indexOf(".");
  const part = (p: string) => (p.startsWith('"') ? p : `"${p.replaceAll('"', '""')}"`);
  return `${part(name.slice(0, dot))}.${part(name.slice(dot + 1))}`;
}
