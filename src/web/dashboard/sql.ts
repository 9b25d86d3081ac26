import { CANCEL_HEADER } from "../../queue/cancel-headers.ts";
import { archiveTable, queueTable } from "../../queue/names.ts";

/**
 * The dashboard's own statements: the ones no admin function of queue/, process/ or events/
 * already has. Each is bounded for a queue of millions of rows: keyset pagination by
 * msg_id over a bounded window of ids, counts capped at a few thousand rows and estimated
 * from pg_class.reltuples beyond, and lookups by primary key. Table names come only from
 * validated queue names; every value is a parameter.
 */

/** $1 milliseconds: the statement timeout of the current transaction. */
export const SET_STATEMENT_TIMEOUT = "SELECT set_config('statement_timeout', $1::text, true)";

/**
 * $1 how many rows to count at most, $2 the queue table's name (for its estimate). Counts
 * the oldest $1 messages exactly (an index scan that stops at $1), so a small queue gets
 * exact figures and a big one costs the same as a queue of $1; past that the planner's
 * estimate (reltuples, kept by autovacuum) stands in for the depth.
 */
export function queueStats(queue: string): string {
  const table = queueTable(queue);
  return `
    SELECT s.counted, s.visible,
           (SELECT greatest(c.reltuples, 0)::float8 FROM pg_class c WHERE c.oid = to_regclass($2::text)) AS estimate,
           (SELECT extract(epoch FROM now() - enqueued_at)::float8 FROM ${table} ORDER BY msg_id LIMIT 1) AS oldest_age_sec
      FROM (SELECT count(*)::int AS counted, count(*) FILTER (WHERE vt <= clock_timestamp())::int AS visible
              FROM (SELECT vt FROM ${table} ORDER BY msg_id LIMIT $1) t) s`;
}

/**
 * $1 minutes, $2 cap: rows of `table` per minute ago (0 = this minute) by their `column`
 * timestamp, each minute counted up to $2 on that column's index, so a busy half hour costs
 * at most $1 x $2 index entries instead of a scan of everything in it.
 */
function perMinute(table: string, column: string): string {
  return `
    SELECT m.minute, (SELECT count(*) FROM (
             SELECT 1 FROM ${table}
              WHERE ${column} > now() - (m.minute + 1) * interval '1 minute' AND ${column} <= now() - m.minute * interval '1 minute'
              LIMIT $2) s)::int AS count
      FROM generate_series(0, $1::int - 1) AS m(minute)`;
}

/** $1 minutes, $2 cap: a queue's archived messages per minute (its archived_at index). */
export const archivedPerMinute = (queue: string): string => perMinute(archiveTable(queue), "archived_at");

/** $1 minutes, $2 cap: failed runs per minute, every queue (failed_jobs_failed_at_idx). */
export const FAILURES_PER_MINUTE = perMinute("pgbus.failed_jobs", "failed_at");

/**
 * The state of a message in its queue table, for lists and the job page: 'cancelling' once a
 * cancel waits for the run that holds it (the header bus.cancel sets), whatever else holds.
 */
const QUEUE_STATE = (queueParam: string) => `
  CASE WHEN q.headers ? '${CANCEL_HEADER.requested}' THEN 'cancelling'
       WHEN q.vt <= clock_timestamp() THEN 'waiting'
       WHEN q.read_ct = 0 THEN 'scheduled'
       WHEN EXISTS (SELECT 1 FROM pgbus.failed_jobs f
                     WHERE f.queue_name = ${queueParam}::text AND f.msg_id = q.msg_id AND f.attempt = q.read_ct
                       AND f.outcome = 'retried') THEN 'retrying'
       ELSE 'running' END`;

/** The state of a message in its archive: cancelled (bus.cancel archived it) or completed. */
const ARCHIVED_STATE = (alias: string) =>
  `CASE WHEN ${alias}.headers ? '${CANCEL_HEADER.cancelledAt}' THEN 'cancelled' ELSE 'completed' END`;

/** Filters of the job list, by state; chosen from this table, never from the request's text. */
export const STATE_FILTERS = {
  waiting: "q.vt <= clock_timestamp()",
  scheduled: "q.vt > clock_timestamp() AND q.read_ct = 0",
  active: "q.vt > clock_timestamp() AND q.read_ct > 0",
} as const;

export type ListedState = keyof typeof STATE_FILTERS | "completed" | "all";

/**
 * A page of a queue's messages (or its archive's, for "completed"), newest first:
 * $1 the id to start below, $2 the lowest id to look at (the window that bounds a filtered
 * search), $3 job name or null, $4 payload path (text[]) or null, $5 the value at that
 * path, $6 page size, $7 the queue's name. The page is cut (LIMIT) before its states are
 * worked out: a state's look-up in pgbus.failed_jobs then runs once per row shown, by
 * index. With the look-up in the same query level the planner, expecting the whole window,
 * hashed every retried failure of the queue instead (a scan of pgbus.failed_jobs: 90 ms at
 * 100,000 failures, growing with them).
 */
export function listJobs(queue: string, state: ListedState): string {
  const archived = state === "completed";
  const table = archived ? archiveTable(queue) : queueTable(queue);
  const filter = state === "all" || archived ? "true" : STATE_FILTERS[state];
  const stateColumn = archived ? ARCHIVED_STATE("q") : QUEUE_STATE("$7");
  return `
    SELECT q.msg_id::text AS id, q.read_ct, q.enqueued_at, q.message ->> 'job' AS job, ${stateColumn} AS state,
           left((q.message -> 'payload')::text, 160) AS preview,
           CASE WHEN pg_column_size(q.message) <= 8192 THEN q.message -> 'payload' END AS small_payload
      FROM (SELECT q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers
              FROM ${table} q
             WHERE q.msg_id < $1::bigint AND q.msg_id >= $2::bigint
               AND ($3::text IS NULL OR q.message ->> 'job' = $3::text)
               AND ($4::text[] IS NULL OR q.message -> 'payload' #>> $4::text[] = $5::text)
               AND ${filter}
             ORDER BY q.msg_id DESC LIMIT $6) q
     WHERE $7::text IS NOT NULL
     ORDER BY q.msg_id DESC`;
}

/** The id bounds of a queue (or archive) table: by the primary key, two index probes. */
export function idBounds(queue: string, archived: boolean): string {
  const table = archived ? archiveTable(queue) : queueTable(queue);
  return `SELECT (SELECT min(msg_id) FROM ${table})::text AS min_id, (SELECT max(msg_id) FROM ${table})::text AS max_id`;
}

/** $1 id, $2 queue name: the message, in its queue or in its archive. */
export function findJob(queue: string): string {
  return `
    SELECT q.msg_id::text AS id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, NULL::timestamptz AS archived_at,
           q.message, q.headers, ${QUEUE_STATE("$2")} AS state
      FROM ${queueTable(queue)} q WHERE q.msg_id = $1::bigint
    UNION ALL
    SELECT a.msg_id::text, a.read_ct, a.enqueued_at, a.last_read_at, a.vt, a.archived_at, a.message, a.headers, ${ARCHIVED_STATE("a")}
      FROM ${archiveTable(queue)} a WHERE a.msg_id = $1::bigint
    LIMIT 1`;
}

/** $1 queue, $2 message id: its failed runs, in order (pgbus.failed_jobs, by migration 0016's index). */
export const JOB_FAILURES = `
  SELECT attempt, outcome, error, failed_at FROM pgbus.failed_jobs WHERE queue_name = $1 AND msg_id = $2::bigint ORDER BY attempt, id`;

/**
 * $1 id, $2 queue name. Makes a message that waits (for its delay, or for a retry after a
 * failure) visible now. A message that is running is left alone: its read count is past
 * its last recorded failure, so making it visible would hand it to a second worker.
 */
export function runJobNow(queue: string): string {
  return `
    UPDATE ${queueTable(queue)} q SET vt = clock_timestamp()
     WHERE q.msg_id = $1::bigint AND q.vt > clock_timestamp()
       AND (q.read_ct = 0 OR q.read_ct = (SELECT max(f.attempt) FROM pgbus.failed_jobs f
                                           WHERE f.queue_name = $2 AND f.msg_id = q.msg_id AND f.outcome = 'retried'))
    RETURNING q.msg_id::text AS id`;
}

/** $1 ids (bigint[]), $2 queue name: the states of watched messages for live updates; missing ids are gone or archived. */
export function watchedStates(queue: string): string {
  return `
    SELECT q.msg_id::text AS id, ${QUEUE_STATE("$2")} AS state, q.read_ct FROM ${queueTable(queue)} q WHERE q.msg_id = ANY($1::bigint[])
    UNION ALL
    SELECT a.msg_id::text, ${ARCHIVED_STATE("a")}, a.read_ct FROM ${archiveTable(queue)} a WHERE a.msg_id = ANY($1::bigint[])`;
}

/** Topic bindings, without depths (those come from the capped counts above). */
export const BINDINGS = "SELECT pattern, queue_name FROM pgmq.topic_bindings ORDER BY queue_name, pattern";

/** Whether pgmq.topic_bindings exists (a PGMQ extension older than topics has none). */
export const HAS_BINDINGS = "SELECT to_regclass('pgmq.topic_bindings') IS NOT NULL AS present";
