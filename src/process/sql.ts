import { archiveTable } from "../queue/names.ts";

/**
 * Every statement of the process model (heartbeats, the maintenance's maintenance) and of
 * the CLI's inspection and dead-letter commands, in one place. Table names come only from
 * validated queue names (queue/names.ts); every value is a parameter. These run at most a
 * few times a second, so they are not prepared.
 */

export const PING = "SELECT 1";

// ------------------------------------------------------------------------- processes

/** $1 id, $2 supervisor id, $3 role, $4 host, $5 pid, $6 mode, $7 capacity, $8 busy, $9 queues, $10 stats. */
export const UPSERT_PROCESS = `
  INSERT INTO pgbus.processes (id, supervisor_id, role, host, pid, execution_mode, capacity, busy, queues, stats)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text[], $10::jsonb)
  ON CONFLICT (id) DO UPDATE
     SET execution_mode = EXCLUDED.execution_mode, capacity = EXCLUDED.capacity, busy = EXCLUDED.busy,
         queues = EXCLUDED.queues, stats = EXCLUDED.stats, last_beat_at = now()`;

/** $1 id. */
export const DELETE_PROCESS = "DELETE FROM pgbus.processes WHERE id = $1";

/** $1 supervisor id: the supervisor's row and its children's. */
export const DELETE_PROCESS_TREE = "DELETE FROM pgbus.processes WHERE id = $1 OR supervisor_id = $1";

/** Each supervisor first, then its children by role and pid. */
export const LIST_PROCESSES = `
  SELECT id, supervisor_id, role, host, pid, execution_mode, capacity, busy, queues, stats, started_at, last_beat_at,
         extract(epoch FROM now() - last_beat_at)::float8 AS beat_age_sec
    FROM pgbus.processes
   ORDER BY coalesce(supervisor_id, id), supervisor_id IS NOT NULL, role, pid`;

/** $1 ms without a heartbeat. A reaped process that is alive after all re-inserts its row on its next beat. */
export const REAP_STALE_PROCESSES = `
  DELETE FROM pgbus.processes WHERE last_beat_at < now() - $1::float8 * interval '1 millisecond'
  RETURNING id, role, host, pid`;

// ------------------------------------------------------------------------ maintenance

/** $1 lock key. */
export const TRY_ADVISORY_LOCK = "SELECT pg_try_advisory_lock($1) AS locked";

/** $1 lock key. */
export const ADVISORY_UNLOCK = "SELECT pg_advisory_unlock($1) AS unlocked";

/**
 * $1 hours, $2 batch size. Deletes at most one batch of the oldest rows, so pruning a
 * large archive is many short transactions rather than one that holds locks for minutes.
 */
export function pruneArchive(queue: string): string {
  const table = archiveTable(queue);
  return `
    WITH doomed AS (
      SELECT msg_id FROM ${table} WHERE archived_at < now() - $1::float8 * interval '1 hour' ORDER BY archived_at LIMIT $2),
    gone AS (DELETE FROM ${table} a USING doomed WHERE a.msg_id = doomed.msg_id RETURNING 1)
    SELECT count(*)::int AS count FROM gone`;
}

/** $1 hours. */
export const PRUNE_FAILED_JOBS = `
  WITH gone AS (DELETE FROM pgbus.failed_jobs WHERE failed_at < now() - $1::float8 * interval '1 hour' RETURNING 1)
  SELECT count(*)::int AS count FROM gone`;

/** $1 hours. Finished batches (their callbacks are enqueued); unfinished ones stay, however old. */
export const PRUNE_FINISHED_BATCHES = `
  WITH gone AS (DELETE FROM pgbus.batches WHERE finished_at < now() - $1::float8 * interval '1 hour' RETURNING 1)
  SELECT count(*)::int AS count FROM gone`;

/** $1 hours. */
export const PRUNE_PROCESSED_EVENTS = `
  WITH gone AS (DELETE FROM pgbus.processed_events WHERE processed_at < now() - $1::float8 * interval '1 hour' RETURNING 1)
  SELECT count(*)::int AS count FROM gone`;
