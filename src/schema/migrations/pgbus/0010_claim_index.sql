-- Delayed jobs off the hot path, and priorities (issue #14).
--
-- The claim used to walk the primary key (msg_id order) and skip every row whose VT was in
-- the future: delayed jobs and retries waiting out their backoff were fetched and thrown
-- away by every claim, so 100,000 of them ahead of the ready rows cut a drain from 45k to
-- 9k jobs/s. Now every queue has one index, (priority, vt, msg_id), and the claim probes
-- it once per priority level, from the lowest VT up to now: it reaches only due rows (and
-- none that are in flight, whose VT is in the future too), whatever waits behind them.
-- See docs/architecture.md, "Delayed jobs and priorities", for the designs measured.
--
-- The priority is the message header `pgbus_priority` (0-9, 0 first; missing or anything
-- else counts as 5), so the queue table keeps PGMQ's shape: the pgmq extension, pg_partman
-- and every PGMQ client in any language keep working with it, and a producer in another
-- language can set a priority by writing the header.

-- A message's priority, from its headers. IMMUTABLE so it can be indexed; it never fails,
-- so a foreign producer's odd header cannot break its INSERT.
CREATE FUNCTION pgbus.message_priority(headers jsonb) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE headers ->> 'pgbus_priority'
    WHEN '0' THEN 0 WHEN '1' THEN 1 WHEN '2' THEN 2 WHEN '3' THEN 3 WHEN '4' THEN 4
    WHEN '6' THEN 6 WHEN '7' THEN 7 WHEN '8' THEN 8 WHEN '9' THEN 9 ELSE 5 END
$$;

-- Creates the claim index of a queue if it is missing. On a partitioned queue the index
-- is made on the parent, so pg_partman's future partitions get it too.
CREATE FUNCTION pgbus.enable_claim_index(queue_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  qn text := pgbus.checked_queue_name(queue_name);
BEGIN
  IF to_regclass(format('pgmq.%I', 'q_' || qn || '_claim')) IS NOT NULL THEN
    RETURN;
  END IF;
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (pgbus.message_priority(headers), vt, msg_id)',
    'q_' || qn || '_claim', 'q_' || qn);
END $$;

-- A queue is complete only with its claim index (otherwise every claim would sort the
-- whole table), so ensure_one_queue makes the index for queues that miss it.
CREATE OR REPLACE FUNCTION pgbus.queue_ready(queue_name text) RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT pgbus.pgmq_table('a_' || queue_name) IS NOT NULL
     AND pgbus.pgmq_table('q_' || queue_name || '_claim') IS NOT NULL
     AND EXISTS (SELECT 1 FROM pg_trigger t
                  WHERE t.tgname = 'pgbus_notify_insert' AND t.tgrelid = pgbus.pgmq_table('q_' || queue_name))
$$;

CREATE OR REPLACE FUNCTION pgbus.ensure_one_queue(qn text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF pgbus.queue_ready(qn) THEN
    RETURN;
  END IF;
  PERFORM pgbus.lock_queue(qn);
  IF NOT pgbus.pgmq_table_exists('q_' || qn) OR NOT pgbus.pgmq_table_exists('a_' || qn) THEN
    PERFORM pgmq.create(qn);
  END IF;
  IF NOT pgbus.queue_ready(qn) THEN
    PERFORM pgbus.enable_notify(qn);
    PERFORM pgbus.enable_claim_index(qn);
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = pgbus.pgmq_table('q_' || qn)) = 'r' THEN
      PERFORM pgbus.tune_queue_table(qn);
    END IF;
  END IF;
END $$;

-- Existing queues get the index now. Best effort, like 0005: a queue another PGMQ client
-- made in a shape this cannot index is left to ensure_one_queue (and reported).
DO $$
DECLARE
  queue record;
BEGIN
  FOR queue IN SELECT queue_name FROM pgmq.meta LOOP
    BEGIN
      PERFORM pgbus.enable_claim_index(queue.queue_name);
    EXCEPTION WHEN others THEN
      RAISE NOTICE 'queue % has no claim index: %', queue.queue_name, SQLERRM;
    END;
  END LOOP;
END $$;
