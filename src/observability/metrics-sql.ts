/**
 * The statements of the metrics: the workers' periodic upsert of their job counts into
 * pgbus.job_metrics (migration 0015), and what /metrics reads. Every value is a parameter.
 * They run every few seconds per process at most, so they are not prepared.
 */

/**
 * $1 a JSON array of rows (queue_name, job_name, the four counts, duration_count,
 * duration_sum_seconds, duration_buckets). Adds them to the totals in one statement. Rows
 * go in (queue, job) order, so two processes flushing the same rows lock them in the same
 * order and cannot deadlock.
 */
export const ADD_JOB_METRICS = `
  INSERT INTO pgbus.job_metrics AS m
         (queue_name, job_name, succeeded, failed, retried, dead, duration_count, duration_sum_seconds, duration_buckets)
  SELECT r.queue_name, r.job_name, r.succeeded, r.failed, r.retried, r.dead, r.duration_count, r.duration_sum_seconds, r.duration_buckets
    FROM jsonb_to_recordset($1::jsonb) AS r(queue_name text, job_name text, succeeded bigint, failed bigint, retried bigint,
         dead bigint, duration_count bigint, duration_sum_seconds float8, duration_buckets bigint[])
   ORDER BY r.queue_name, r.job_name
  ON CONFLICT (queue_name, job_name) DO UPDATE
     SET succeeded = m.succeeded + EXCLUDED.succeeded,
         failed = m.failed + EXCLUDED.failed,
         retried = m.retried + EXCLUDED.retried,
         dead = m.dead + EXCLUDED.dead,
         duration_count = m.duration_count + EXCLUDED.duration_count,
         duration_sum_seconds = m.duration_sum_seconds + EXCLUDED.duration_sum_seconds,
         duration_buckets = ARRAY(
           SELECT coalesce(a, 0) + coalesce(b, 0)
             FROM unnest(m.duration_buckets, EXCLUDED.duration_buckets) WITH ORDINALITY AS t(a, b, i) ORDER BY i),
         updated_at = now()`;

export const LIST_JOB_METRICS = `
  SELECT queue_name, job_name, succeeded::float8, failed::float8, retried::float8, dead::float8,
         duration_count::float8, duration_sum_seconds, duration_buckets::float8[]
    FROM pgbus.job_metrics ORDER BY queue_name, job_name`;

/** Connections to this database by application_name, pgbus's own (every pool pgbus opens names itself pgbus...). */
export const PGBUS_CONNECTIONS = `
  SELECT application_name, count(*)::int AS count
    FROM pg_stat_activity
   WHERE datname = current_database() AND application_name LIKE 'pgbus%'
   GROUP BY application_name ORDER BY application_name`;
