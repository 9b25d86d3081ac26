import { queueTable } from "../queue/names.ts";

/**
 * The statements of `pgbus doctor`: read-only looks at the server's settings, the
 * catalogs and pgbus's tables. Table names come only from validated queue names; every
 * value is a parameter.
 */

/** Client connections only: background workers and autovacuum do not count against max_connections. */
export const SERVER = `
  SELECT current_setting('server_version_num')::int AS version_num,
         current_setting('server_version') AS version,
         current_setting('max_connections')::int AS max_connections,
         current_setting('superuser_reserved_connections')::int AS reserved_connections,
         (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int AS connections,
         (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND application_name LIKE 'pgbus%')::int AS pgbus_connections,
         current_setting('autovacuum') = 'on' AS autovacuum,
         pg_is_in_recovery() AS in_recovery`;

export const EXTENSIONS = `
  SELECT extname AS name, extversion AS version FROM pg_extension ORDER BY extname`;

/** Whether the pgmq schema's tables and pgbus's migration record exist at all. */
export const SCHEMAS = `
  SELECT to_regclass('pgmq.meta') IS NOT NULL AS pgmq, to_regclass('pgbus.schema_migrations') IS NOT NULL AS migrations`;

export const APPLIED_MIGRATIONS = "SELECT set_name, version FROM pgbus.schema_migrations";

/**
 * Every queue of pgmq.meta with what the doctor checks on its tables: both tables there,
 * the primary key, the archive's archived_at index, no vt index (pgbus drops it: it only
 * costs writes), no invalid index (a failed CREATE INDEX CONCURRENTLY), and the queue
 * table's storage options (autovacuum tuning).
 */
export const QUEUE_TABLES = `
  WITH tables AS (
    SELECT m.queue_name::text AS queue_name, m.is_partitioned,
           to_regclass(format('pgmq.%I', 'q_' || m.queue_name)) AS q, to_regclass(format('pgmq.%I', 'a_' || m.queue_name)) AS a
      FROM pgmq.meta m),
  leading_columns AS (
    SELECT i.indrelid, a.attname, i.indisprimary, i.indisvalid
      FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
     WHERE i.indrelid IN (SELECT q FROM tables UNION ALL SELECT a FROM tables))
  SELECT t.queue_name, t.is_partitioned, t.q IS NOT NULL AS has_queue_table, t.a IS NOT NULL AS has_archive_table,
         coalesce((SELECT reloptions FROM pg_class WHERE oid = t.q), '{}') AS reloptions,
         EXISTS (SELECT 1 FROM leading_columns l WHERE l.indrelid = t.q AND l.indisprimary AND l.attname = 'msg_id') AS has_primary_key,
         EXISTS (SELECT 1 FROM leading_columns l WHERE l.indrelid = t.a AND l.attname = 'archived_at') AS has_archive_index,
         EXISTS (SELECT 1 FROM leading_columns l WHERE l.indrelid = t.q AND l.attname = 'vt') AS has_vt_index,
         EXISTS (SELECT 1 FROM leading_columns l WHERE l.indrelid IN (t.q, t.a) AND NOT l.indisvalid) AS has_invalid_index
    FROM tables t ORDER BY t.queue_name`;

/** $1 ms without a heartbeat. */
export const STALE_PROCESSES = `
  SELECT role, host, pid, extract(epoch FROM now() - last_beat_at)::float8 AS beat_age_sec
    FROM pgbus.processes WHERE last_beat_at < now() - $1::float8 * interval '1 millisecond' ORDER BY last_beat_at`;

export const QUEUE_NAMES = "SELECT queue_name::text AS name FROM pgmq.meta ORDER BY 1";

/** $1 hours. Messages that arrived in a DLQ within the window (enqueued_at is when they were moved there). */
export function deadLettersSince(dlq: string): string {
  return `SELECT count(*)::int AS count FROM ${queueTable(dlq)} WHERE enqueued_at > now() - $1::float8 * interval '1 hour'`;
}
