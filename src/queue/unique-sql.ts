import type { NamedStatement } from "../db/queryable.ts";
import { queueTable } from "./names.ts";
import { namedStatement } from "./sql.ts";
import type { UniqueFor } from "./unique.ts";

/**
 * The statements of unique jobs (see unique.ts), and the headers that carry a message's
 * key: `pgbus_unique_key` for "until_done" keys, `pgbus_unique_queued_key` for "queued" ones.
 *
 * A queue holds its keys in one of two stores:
 * - "index" (plain and unlogged queues): partial unique indexes on the queue table itself
 *   (migrations 0007 and 0011), so the INSERT of the message takes its key;
 * - "table" (partitioned queues, which cannot have such an index): rows of
 *   pgbus.unique_keys that the same statement writes, released by triggers (migration 0018).
 */
export const UNIQUE_KEY_HEADER = "pgbus_unique_key";
export const UNIQUE_QUEUED_KEY_HEADER = "pgbus_unique_queued_key";

export type UniqueKeyStore = "index" | "table";

// The indexes' expressions, written the same way in every statement that relies on them.
const UNIQUE_JOB = "coalesce(message ->> 'job', '')";
/** A message's key, of either mode, from its `headers`. */
const anyUniqueKey = (headers: string) => `coalesce(${headers} ->> '${UNIQUE_QUEUED_KEY_HEADER}', ${headers} ->> '${UNIQUE_KEY_HEADER}')`;
const ANY_UNIQUE_KEY = anyUniqueKey("headers");
const VISIBLE_AT = "greatest(clock_timestamp() + $3::float8 * interval '1 millisecond', coalesce($4::timestamptz, '-infinity'))";

/**
 * $1 queue. Makes the queue's key store for the mode if missing (an index, or the
 * triggers of a partitioned queue); `enabled` is false when the queue's table is not
 * visible, `partitioned` says which store it has.
 */
export const ENABLE_UNIQUE_KEYS: Record<UniqueFor, string> = {
  until_done: enableStatement("pgbus.enable_unique_keys"),
  queued: enableStatement("pgbus.enable_queued_unique_keys"),
};
function enableStatement(fn: string): string {
  return `SELECT ${fn}($1) AS enabled,
     coalesce((SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(format('pgmq.%I', 'q_' || $1::text))), false) AS partitioned`;
}

/**
 * Like sendMany ($1 messages, $2 headers, $3 delay ms, $4 visible time), for messages that
 * may carry a key: one whose (job, key) is taken is not inserted (nor a second one of the
 * same batch). No conflict target: a key may be taken in either unique index (0007 or
 * 0011), and the queue has no other unique index that an insert could hit (msg_id is an
 * identity). Returns the inserted rows with their job and key.
 */
export const sendManyUnique = (queue: string): NamedStatement =>
  namedStatement(
    "send_unique",
    queue,
    () =>
      `INSERT INTO ${queueTable(queue)} (vt, message, headers)
     SELECT ${VISIBLE_AT}, m.msg, $2::jsonb -> (m.ord::int - 1)
       FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS m(msg, ord)
      ORDER BY m.ord
     ON CONFLICT DO NOTHING
     RETURNING msg_id, ${UNIQUE_JOB} AS job, ${ANY_UNIQUE_KEY} AS unique_key`,
  );

/**
 * $1 jobs (text[]), $2 keys (text[]), pairwise, $3 true for "queued" keys: the message
 * holding each (job, key) pair now (the oldest, should two: a claimed "until_done" one and
 * a waiting "queued" one). A "queued" key is held only by unclaimed messages; an
 * "until_done" one also by claimed "until_done" messages (see migration 0011).
 */
export const findUniqueKeys = (queue: string): NamedStatement =>
  namedStatement(
    "find_unique",
    queue,
    () =>
      `SELECT DISTINCT ON (k.job, k.unique_key) q.msg_id, k.job, k.unique_key
       FROM unnest($1::text[], $2::text[]) AS k(job, unique_key)
       JOIN ${queueTable(queue)} q ON coalesce(q.message ->> 'job', '') = k.job AND ${anyUniqueKey("q.headers")} = k.unique_key
      WHERE q.last_read_at IS NULL OR (NOT $3::boolean AND (q.headers ->> '${UNIQUE_KEY_HEADER}') = k.unique_key)
      ORDER BY k.job, k.unique_key, q.msg_id`,
  );

/**
 * sendManyUnique for the "table" store, $5 the queue: each keyed message's id is drawn
 * first, its key row inserted (ON CONFLICT DO NOTHING over both unique indexes of
 * pgbus.unique_keys, waiting for an uncommitted holder as the queue-table index would),
 * and only the messages without a key or whose key row went in are inserted, with those
 * ids, in the same statement. A second message of the batch with the same pair conflicts
 * with the first's key row. Same result rows as sendManyUnique.
 */
export const sendManyUniqueInTable = (queue: string): NamedStatement =>
  namedStatement(
    "send_unique_t",
    queue,
    () =>
      `WITH m AS MATERIALIZED (
       SELECT nextval(pg_get_serial_sequence('${queueTable(queue)}', 'msg_id')) AS msg_id, m.msg, m.ord, h.headers,
              coalesce(m.msg ->> 'job', '') AS job, ${anyUniqueKey("h.headers")} AS unique_key
         FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS m(msg, ord),
              LATERAL (SELECT $2::jsonb -> (m.ord::int - 1) AS headers) h
        ORDER BY m.ord),
     taken AS (
       INSERT INTO pgbus.unique_keys (queue_name, job, unique_key, msg_id, enqueued_at, until_done)
       SELECT $5::text, job, unique_key, msg_id, now(), headers ? '${UNIQUE_KEY_HEADER}' FROM m
        WHERE unique_key IS NOT NULL
        ORDER BY ord
       ON CONFLICT DO NOTHING
       RETURNING msg_id)
     INSERT INTO ${queueTable(queue)} (msg_id, enqueued_at, vt, message, headers) OVERRIDING SYSTEM VALUE
     SELECT m.msg_id, now(), ${VISIBLE_AT}, m.msg, m.headers FROM m
      WHERE m.unique_key IS NULL OR m.msg_id IN (SELECT msg_id FROM taken)
      ORDER BY m.ord
     RETURNING msg_id, ${UNIQUE_JOB} AS job, ${ANY_UNIQUE_KEY} AS unique_key`,
  );

/**
 * findUniqueKeys for the "table" store, $4 the queue. A key row counts only while its
 * message is in the queue (same id, enqueue time, job and key: the time prunes a queue
 * partitioned by time to one partition, and a queue made again reuses ids); a row whose
 * message is gone without its trigger firing (a dropped partition) is deleted here, so the
 * enqueue's next round takes the key. This statement's snapshot (READ COMMITTED) sees the
 * holder the INSERT waited for, and a key row commits with its message, so a live holder is
 * never taken for a gone one.
 */
export const findUniqueKeysInTable = (queue: string): NamedStatement =>
  namedStatement(
    "find_unique_t",
    queue,
    () =>
      `WITH held AS MATERIALIZED (
       SELECT u.ctid AS row_id, u.msg_id, u.job, u.unique_key,
              EXISTS (SELECT 1 FROM ${queueTable(queue)} q
                       WHERE q.msg_id = u.msg_id AND q.enqueued_at = u.enqueued_at
                         AND coalesce(q.message ->> 'job', '') = u.job AND ${anyUniqueKey("q.headers")} = u.unique_key) AS live
         FROM unnest($1::text[], $2::text[]) AS k(job, unique_key)
         JOIN pgbus.unique_keys u ON u.queue_name = $4::text AND u.job = k.job AND u.unique_key = k.unique_key
        WHERE u.waiting OR (NOT $3::boolean AND u.until_done)),
     stale AS (DELETE FROM pgbus.unique_keys u USING held WHERE u.ctid = held.row_id AND NOT held.live)
     SELECT DISTINCT ON (job, unique_key) msg_id, job, unique_key FROM held WHERE live ORDER BY job, unique_key, msg_id`,
  );
