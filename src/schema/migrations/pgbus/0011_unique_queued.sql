-- Unique jobs held only while queued (the enqueue option `uniqueFor: "queued"`): the key
-- blocks another enqueue while its message waits (or is delayed), and is released as soon as
-- a worker claims the message, so a new one can be enqueued while it runs.
--
-- Such a key is in the header `pgbus_unique_queued_key` (the "until_done" key of migration
-- 0007 stays in `pgbus_unique_key`), and a second partial unique index holds (job, key) for
-- the messages never claimed: those whose `last_read_at` is still null. A claim sets
-- `last_read_at`, which takes the row out of the index in the same statement: the release
-- is atomic with the claim, needs no extra statement, and a crash cannot leak it (the
-- index holds only rows that exist). A message given back unstarted keeps its
-- `last_read_at`, so it never takes its key back (that could collide with a newer one).
--
-- The index also covers unclaimed messages with an "until_done" key, so one key is one
-- namespace while its messages wait: an enqueue of either mode finds a waiting holder of
-- either mode. Once claimed, an "until_done" holder still blocks "until_done" enqueues
-- (index 0007) but no longer "queued" ones.
--
-- The cost: the claim's UPDATE changes `last_read_at`, which this index's predicate reads,
-- so on a queue that has it claims are no longer HOT updates (each claim also writes the
-- queue's index entries). It is made per queue on first use, so only queues that use
-- "queued" keys pay it.

-- Creates the queued-key index of a queue if it is missing; returns false (and does
-- nothing) when the queue table is not there. Cheap when the index exists.
CREATE FUNCTION pgbus.enable_queued_unique_keys(queue_name text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  qn text := pgbus.checked_queue_name(queue_name);
  index_name text := 'q_' || qn || '_unique_queued';
BEGIN
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
  PERFORM pg_advisory_xact_lock(hashtext('pgbus.enable_queued_unique_keys'), hashtext(qn));
  EXECUTE format(
    'CREATE UNIQUE INDEX IF NOT EXISTS %I ON pgmq.%I
       ((coalesce(message ->> ''job'', '''')), (coalesce(headers ->> ''pgbus_unique_queued_key'', headers ->> ''pgbus_unique_key'')))
       WHERE last_read_at IS NULL AND coalesce(headers ->> ''pgbus_unique_queued_key'', headers ->> ''pgbus_unique_key'') IS NOT NULL',
    index_name, 'q_' || qn);
  RETURN true;
END $$;
