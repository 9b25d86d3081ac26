-- Unique jobs (the enqueue option `uniqueKey`): while a message of a job with a given key
-- is in its queue (waiting, delayed or running), another enqueue of that job with that key
-- inserts nothing and gets the existing message's id.
--
-- The key lives in the message itself, in the header `pgbus_unique_key`, and a partial
-- unique index on the queue table holds (job, key) for the rows that have one. So the key
-- is taken by the INSERT that writes the message (ON CONFLICT DO NOTHING: race-free, and
-- inside the caller's transaction when there is one), and released by whatever removes
-- the row: an ack (archive or delete), a move to the DLQ, a purge, any PGMQ client's
-- delete. No side table, no trigger, nothing a crash can leak. The archive and the DLQ
-- keep the header (no index there), as a record of the key.
--
-- The index covers only rows with a key, and the claim's UPDATE touches neither `message`
-- nor `headers`, so claims stay HOT updates. It is created per queue on first use (see
-- pgbus.enable_unique_keys), so queues that never see a key carry no index at all.

-- Creates the unique-key index of a queue if it is missing; returns false (and does
-- nothing) when the queue table is not there (e.g. created by a transaction this session
-- cannot see yet). Cheap when the index exists: a catalog lookup, no lock.
CREATE FUNCTION pgbus.enable_unique_keys(queue_name text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  qn text := pgbus.checked_queue_name(queue_name);
  index_name text := 'q_' || qn || '_unique_key';
BEGIN
  -- A DLQ gathers dead letters with their keys, any number per key: never unique.
  IF qn LIKE '%\_dlq' THEN
    RAISE EXCEPTION 'queue % is a dead-letter queue: unique keys are for the queues jobs are enqueued to', qn
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF to_regclass(format('pgmq.%I', index_name)) IS NOT NULL THEN
    RETURN true;
  END IF;
  IF to_regclass(format('pgmq.%I', 'q_' || qn)) IS NULL THEN
    RETURN false;
  END IF;
  -- Two sessions creating it at once would collide in the catalog: serialise per queue.
  PERFORM pg_advisory_xact_lock(hashtext('pgbus.enable_unique_keys'), hashtext(qn));
  EXECUTE format(
    'CREATE UNIQUE INDEX IF NOT EXISTS %I ON pgmq.%I ((coalesce(message ->> ''job'', '''')), (headers ->> ''pgbus_unique_key''))
       WHERE (headers ->> ''pgbus_unique_key'') IS NOT NULL',
    index_name, 'q_' || qn);
  RETURN true;
END $$;
