import type { NamedStatement } from "../db/queryable.ts";
import { archiveTable, queueTable } from "../queue/names.ts";
import { MESSAGE_COLUMNS, dueRows, fencedDelete, namedStatement, notPaused, pickedRow } from "../queue/sql.ts";

/**
 * Every statement of the event bus: publish, bindings, idempotent claim and ack, and the
 * outbox. Table names come only from validated queue names; every value is a parameter.
 */

const Q_COLUMNS = MESSAGE_COLUMNS.split(", ")
  .map((column) => `q.${column}`)
  .join(", ");

/**
 * $1 routing key, $2 message, $3 headers (or null), $4 delay in seconds. Fans the event out
 * inside PostgreSQL to every queue bound to a matching pattern, in one statement; returns
 * how many queues got a copy.
 */
export const PUBLISH: NamedStatement = {
  name: "pgbus_publish",
  text: "SELECT pgmq.send_topic($1::text, $2::jsonb, $3::jsonb, $4::int) AS queues",
};

/**
 * $1 pattern, $2 queue. A subscriber's queue (with its DLQ) and its binding, in one
 * statement under the queue's lock: idempotent, and safe with consumers starting together,
 * enqueues into the queue and a drop of it (migration pgbus/0006).
 */
export const ENSURE_SUBSCRIPTION = "SELECT pgbus.ensure_subscription($1::text, $2::text)";
/** $1 queue. The queue's own lock (creation and drop take it too), held to the end of the transaction. */
export const LOCK_QUEUE = "SELECT pgbus.lock_queue($1::text)";
/**
 * $1 queue, $2 the one pattern to keep (null: keep none). Removes the queue's other
 * bindings (a subscriber's old pattern); returns the patterns removed.
 */
export const UNBIND_OTHER_PATTERNS = `DELETE FROM pgmq.topic_bindings
  WHERE queue_name = $1::text AND ($2::text IS NULL OR pattern <> $2::text)
  RETURNING pattern`;

/** $1 subscriber, $2 event id. One row back when this call recorded it; none when it already was. */
export const MARK_HANDLED = `INSERT INTO pgbus.processed_events (subscriber, event_id) VALUES ($1::text, $2::uuid)
  ON CONFLICT DO NOTHING RETURNING 1 AS marked`;

/**
 * Claim for an idempotent subscriber's queue. $1 vt seconds, $2 qty, $3 subscriber.
 * Picks like readBatch (due rows in claim order, see dueRows); copies whose event this subscriber already handled are archived
 * in the same statement and not returned (skipped, not run), the rest are claimed.
 * Different CTEs touch different rows, so no row is modified twice.
 */
export const claimSkippingHandled = (queue: string): NamedStatement =>
  namedStatement(
    "ev_read",
    queue,
    () =>
      `WITH locked AS (${dueRows(queue, "$2", notPaused(queue))}),
     picked AS (
       SELECT q.msg_id,
              EXISTS (SELECT 1 FROM pgbus.processed_events pe
                       WHERE pe.subscriber = $3::text AND pe.event_id = pgbus.event_id_of(q.message)) AS handled
         FROM ${queueTable(queue)} q, locked
        WHERE ${pickedRow("q", "locked")}),
     skipped AS (
       DELETE FROM ${queueTable(queue)} q USING picked
        WHERE q.msg_id = picked.msg_id AND picked.handled
       RETURNING ${Q_COLUMNS}),
     archived AS (
       INSERT INTO ${archiveTable(queue)} (${MESSAGE_COLUMNS}) SELECT ${MESSAGE_COLUMNS} FROM skipped)
     UPDATE ${queueTable(queue)} q
        SET vt = clock_timestamp() + $1::float8 * interval '1 second', read_ct = q.read_ct + 1, last_read_at = clock_timestamp()
       FROM picked
      WHERE q.msg_id = picked.msg_id AND NOT picked.handled
     RETURNING ${Q_COLUMNS}`,
  );

/**
 * Ack for an idempotent subscriber's queue, fenced like the worker's own acks (queue/sql.ts):
 * $1 ids, $2 the read_ct each was claimed with, $3 subscriber. Archives the messages and
 * records their events as handled in ONE statement, so there is no moment when a message
 * is gone but its event is not marked, nor marked while its message is still queued: a
 * crash before it commits runs the handler again, never loses the event.
 */
export const archiveMarkingHandled = (queue: string): NamedStatement =>
  namedStatement(
    "ev_archive",
    queue,
    () =>
      `WITH moved AS (${fencedDelete(queue, 1)} RETURNING ${Q_COLUMNS}),
     archived AS (INSERT INTO ${archiveTable(queue)} (${MESSAGE_COLUMNS}) SELECT ${MESSAGE_COLUMNS} FROM moved),
     handled AS (
       INSERT INTO pgbus.processed_events (subscriber, event_id)
       SELECT DISTINCT $3::text, pgbus.event_id_of(message) FROM moved WHERE pgbus.event_id_of(message) IS NOT NULL
       ON CONFLICT DO NOTHING)
     SELECT msg_id FROM moved`,
  );

/** Like archiveMarkingHandled for ackMode "delete". $1 ids, $2 read_cts, $3 subscriber. */
export const deleteMarkingHandled = (queue: string): NamedStatement =>
  namedStatement(
    "ev_delete",
    queue,
    () =>
      `WITH moved AS (${fencedDelete(queue, 1)} RETURNING q.msg_id, q.message),
     handled AS (
       INSERT INTO pgbus.processed_events (subscriber, event_id)
       SELECT DISTINCT $3::text, pgbus.event_id_of(message) FROM moved WHERE pgbus.event_id_of(message) IS NOT NULL
       ON CONFLICT DO NOTHING)
     SELECT msg_id FROM moved`,
  );

/** $1 kind ('job' | 'event'), $2 target (queue or routing key), $3 JSON array of messages, $4 JSON array of headers (or null), $5 delay ms. */
export const INSERT_OUTBOX = `INSERT INTO pgbus.outbox (kind, target, message, headers, delay_ms)
  SELECT $1::text, $2::text, m.msg, $4::jsonb -> (m.ord::int - 1), $5::int
    FROM jsonb_array_elements($3::jsonb) WITH ORDINALITY AS m(msg, ord)
   ORDER BY m.ord
  RETURNING id`;

/**
 * Moves one batch of outbox rows to their queues in ONE statement: picks up to $1 rows
 * (only the ids in $2 when it is not null) with FOR UPDATE SKIP LOCKED, deletes them and
 * sends them, so a row is sent exactly when its delete commits and two pollers never take
 * the same row. Jobs go per target queue with one pgmq.send_batch, visible no sooner than
 * created_at + delay_ms; events go through pgmq.send_topic in id order, their remaining
 * delay rounded up to whole seconds (send_topic's unit).
 */
export const MOVE_OUTBOX: NamedStatement = {
  name: "pgbus_outbox_move",
  text: `WITH moved AS (
       DELETE FROM pgbus.outbox o
        USING (SELECT id FROM pgbus.outbox
                WHERE available_at <= clock_timestamp() AND ($2::bigint[] IS NULL OR id = ANY($2::bigint[]))
                ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) picked
        WHERE o.id = picked.id
       RETURNING o.id, o.kind, o.target, o.message, o.headers, o.created_at + o.delay_ms * interval '1 millisecond' AS due_at),
     jobs AS (
       SELECT pgmq.send_batch(target, array_agg(message ORDER BY id), array_agg(headers ORDER BY id), greatest(now(), due_at)) AS msg_id
         FROM moved WHERE kind = 'job'
        GROUP BY target, greatest(now(), due_at)),
     events AS (
       SELECT pgmq.send_topic(target, message, headers, greatest(0, ceil(extract(epoch FROM due_at - now())))::int) AS copies
         FROM (SELECT * FROM moved WHERE kind = 'event' ORDER BY id) e)
     SELECT (SELECT count(*) FROM moved)::int AS moved,
            (SELECT count(*) FROM jobs)::int AS jobs,
            (SELECT coalesce(sum(copies), 0) FROM events)::int AS event_copies`,
};

/** $1 limit. Ids a poller would take next, without locking: used to retry a failed batch row by row. */
export const OUTBOX_CANDIDATES = "SELECT id FROM pgbus.outbox WHERE available_at <= clock_timestamp() ORDER BY id LIMIT $1";

/** $1 id, $2 error message. Puts a row that could not be moved aside with backoff (1 s doubling, at most 5 min). */
export const DEFER_OUTBOX_ROW = `UPDATE pgbus.outbox
  SET attempts = attempts + 1, last_error = $2::text,
      available_at = clock_timestamp() + least(300000, 1000 * power(2, least(attempts, 20))) * interval '1 millisecond'
  WHERE id = $1::bigint`;

/** Every binding with its queue's depth (pgmq.metrics, null when the queue is gone). */
export const LIST_BINDINGS = `
  SELECT b.pattern, b.queue_name,
         (SELECT m.queue_length FROM pgmq.metrics(b.queue_name) m
           WHERE EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = b.queue_name)) AS depth
    FROM pgmq.topic_bindings b
   ORDER BY b.queue_name, b.pattern`;
