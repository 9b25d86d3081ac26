-- Queue tables are hot: every message is inserted, updated at each claim and deleted at the
-- ack, so dead tuples pile up at the head of the primary key that every claim scans.
-- Vacuum them early and without throttling (a few thousand rows, not 20% of the table),
-- and leave room in each page so the claim's UPDATE can stay on the same page.
CREATE FUNCTION pgbus.tune_queue_table(queue_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  qn text := pgbus.checked_queue_name(queue_name);
BEGIN
  EXECUTE format(
    'ALTER TABLE pgmq.%I SET (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 5000,
       autovacuum_vacuum_insert_scale_factor = 0.0, autovacuum_vacuum_insert_threshold = 20000,
       autovacuum_analyze_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0)', 'q_' || qn);
END $$;
