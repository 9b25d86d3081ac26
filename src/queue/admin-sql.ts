import { CLOSED } from "./breaker-sql.ts";
import { archiveTable, queueTable } from "./names.ts";

/**
 * The statements of queue inspection and of the dead-letter commands (`pgbus status`,
 * `pgbus queues`, `pgbus dlq`). Table names come only from validated queue names; every
 * value is a parameter. They run a few times a second at most, so they are not prepared.
 */

// ------------------------------------------------------------------- queue inspection

/** $1 seconds. Uses the archive's archived_at index. */
export function archivedSince(queue: string): string {
  return `SELECT count(*)::int AS count FROM ${archiveTable(queue)} WHERE archived_at > now() - $1::float8 * interval '1 second'`;
}

// ---------------------------------------------------------------------- dead letters

/** $1 limit. */
export function listDeadLetters(dlq: string): string {
  return `SELECT msg_id, read_ct, enqueued_at, message, headers FROM ${queueTable(dlq)} ORDER BY msg_id LIMIT $1`;
}

/**
 * $1 ids (bigint[], or null for all), $2 header keys to drop. Moves messages from the DLQ
 * back to their queue in one statement, so each is in exactly one of the two whatever
 * happens. They return as new messages (read_ct 0): a retry from the DLQ starts afresh.
 */
export function retryDeadLetters(queue: string, dlq: string): string {
  return `
    WITH moved AS (
      DELETE FROM ${queueTable(dlq)} WHERE $1::bigint[] IS NULL OR msg_id = ANY($1::bigint[])
      RETURNING msg_id, message, headers),
    inserted AS (
      INSERT INTO ${queueTable(queue)} (vt, message, headers)
      SELECT clock_timestamp(), message, nullif(coalesce(headers, '{}'::jsonb) - $2::text[], '{}'::jsonb)
        FROM moved ORDER BY msg_id
      RETURNING msg_id)
    SELECT (SELECT coalesce(array_agg(msg_id::text ORDER BY msg_id), '{}') FROM moved) AS from_ids,
           (SELECT coalesce(array_agg(msg_id::text ORDER BY msg_id), '{}') FROM inserted) AS to_ids`;
}

/** $1 ids (bigint[], or null for all). */
export function discardDeadLetters(dlq: string): string {
  return `
    WITH gone AS (DELETE FROM ${queueTable(dlq)} WHERE $1::bigint[] IS NULL OR msg_id = ANY($1::bigint[]) RETURNING msg_id)
    SELECT coalesce(array_agg(msg_id::text ORDER BY msg_id), '{}') AS ids FROM gone`;
}

// ---------------------------------------------------------------- partitioned queues

/** The schema pg_partman is installed in (no row: not installed). */
export const PARTMAN_SCHEMA = "SELECT extnamespace::regnamespace::text AS schema FROM pg_extension WHERE extname = 'pg_partman'";

/** The pgmq tables pg_partman manages (queues and archives of partitioned queues). */
export const partmanParents = (schema: string): string =>
  `SELECT parent_table FROM ${quoteIdent(schema)}.part_config WHERE parent_table LIKE 'pgmq.%' ORDER BY 1`;

/** $1 parent table: creates the partitions ahead and drops those past the retention. */
export const partmanMaintain = (schema: string): string => `SELECT ${quoteIdent(schema)}.run_maintenance(p_parent_table := $1)`;

/**
 * $1 parent table (a partitioned queue table): its partitions, oldest first, with their
 * ranges (end id inclusive, end time exclusive, as pg_partman reports them), and the bound
 * below which no message can be: the oldest message's id and time, or the next id and now.
 */
export const queuePartitions = (schema: string): string => `
  SELECT format('%I.%I', p.partition_schemaname, p.partition_tablename) AS child, i.child_end_id::text AS end_id, i.child_end_time AS end_time
    FROM ${quoteIdent(schema)}.show_partitions($1, 'ASC') p
    CROSS JOIN LATERAL ${quoteIdent(schema)}.show_partition_info(p.partition_schemaname || '.' || p.partition_tablename, NULL, $1) i`;

export const queueLowerBound = (parent: string): string => `
  SELECT coalesce(min(msg_id), coalesce(pg_sequence_last_value(pg_get_serial_sequence($1, 'msg_id')::regclass), 0) + 1)::text AS min_id,
         least(coalesce(min(enqueued_at), now()), now()) - interval '1 hour' AS min_time
    FROM ${parent}`;

/** Drops one partition if it is empty, in one statement; gives up after 2 s waiting for its lock. */
export const dropEmptyPartition = (child: string): string => `
  DO $drop$ BEGIN
    SET LOCAL lock_timeout = '2s';
    LOCK TABLE ${child} IN ACCESS EXCLUSIVE MODE;
    IF NOT EXISTS (SELECT 1 FROM ${child}) THEN DROP TABLE ${child}; END IF;
  END $drop$`;

/**
 * $1 parent table: its partitions that do not have the hot-queue storage settings yet
 * (pgbus.tune_queue_table's, which cannot be set on the partitioned parent itself).
 */
export const UNTUNED_PARTITIONS = `
  SELECT format('%I.%I', n.nspname, c.relname) AS child
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE i.inhparent = $1::regclass AND NOT coalesce(c.reloptions @> ARRAY['fillfactor=70'], false)`;

/** The settings of pgbus.tune_queue_table (migration pgbus/0005), for one partition. */
export const tunePartition = (child: string): string =>
  `ALTER TABLE ${child} SET (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 5000,
     autovacuum_vacuum_insert_scale_factor = 0.0, autovacuum_vacuum_insert_threshold = 20000,
     autovacuum_analyze_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0)`;

/** $1 partman schema, $2 parent table: no retention (pgbus drops a queue's partitions only when empty). */
export const keepQueuePartitions = (schema: string): string =>
  `UPDATE ${quoteIdent(schema)}.part_config SET retention = NULL WHERE parent_table = $1`;

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

// ---------------------------------------------------------------------------- pausing

/** $1 queue, $2 who paused it (or null). Workers stop claiming from it with their next claim. */
export const PAUSE_QUEUE = `
  INSERT INTO pgbus.queue_states (queue_name, paused, paused_at, paused_by, updated_at)
  VALUES ($1, true, now(), $2, now())
  ON CONFLICT (queue_name) DO UPDATE
     SET paused = true, paused_at = coalesce(CASE WHEN pgbus.queue_states.paused THEN pgbus.queue_states.paused_at END, now()),
         paused_by = EXCLUDED.paused_by, updated_at = now(),
         -- A manual pause takes over from an open breaker: no half-open probe, it holds until resumed.
         breaker_state = 'closed', breaker_until = NULL, breaker_probe_msg_id = NULL
  RETURNING paused_at`;

/**
 * $1 queue. Returns the row when it was paused, with the state its circuit breaker had (a
 * resume closes the breaker too); its trigger wakes the queue's workers.
 */
export const RESUME_QUEUE = `
  UPDATE pgbus.queue_states s SET ${CLOSED}, updated_at = now()
    FROM (SELECT breaker_state FROM pgbus.queue_states WHERE queue_name = $1 FOR UPDATE) before
   WHERE s.queue_name = $1 AND s.paused
  RETURNING s.queue_name, before.breaker_state`;

export const PAUSED_QUEUES = `
  SELECT queue_name, paused_at, paused_by FROM pgbus.queue_states WHERE paused ORDER BY queue_name`;
