-- Job counters and duration histograms for /metrics, summed over every worker process.
-- Processes count in memory and add their counts here with one upsert every few seconds
-- (observability/job-metrics.ts; under `pgbus start` the supervisor does it for its
-- children, from their heartbeats), so a scrape of any process (pgbus web, an app's own
-- server) reads the totals of the whole cluster, and a worker that dies loses at most its
-- last few seconds of counts, never the totals. One row per (queue, job): a handful of
-- rows, updated a few times a second across a cluster, so fillfactor leaves room for HOT
-- updates.
CREATE TABLE pgbus.job_metrics (
  queue_name text NOT NULL,
  job_name text NOT NULL,
  succeeded bigint NOT NULL DEFAULT 0,
  failed bigint NOT NULL DEFAULT 0,
  retried bigint NOT NULL DEFAULT 0,
  dead bigint NOT NULL DEFAULT 0,
  duration_count bigint NOT NULL DEFAULT 0,
  duration_sum_seconds double precision NOT NULL DEFAULT 0,
  -- Runs per duration bucket (not cumulative), in the order of the bounds in
  -- observability/job-metrics.ts, the last one for longer runs.
  duration_buckets bigint[] NOT NULL DEFAULT '{}',
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (queue_name, job_name)
) WITH (fillfactor = 70);
