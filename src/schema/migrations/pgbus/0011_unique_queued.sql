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

-- A queue's unique index named q_<queue>_<suffix>, made if missing from `definition` (a
-- format() string taking the index and the table names); returns false (and does nothing)
-- when the queue table is not there (e.g. created by a transaction this session cannot see
-- yet). Cheap when the index exists: a catalog lookup, no lock. Both unique-key functions
-- below go through it.
CREATE FUNCTION pgbus.ensure_unique_index(queue_name text, suffix text, definition text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  qn text := pgbus.checked_queue_name(queue_name);
  index_name text := 'q_' || qn || '_' || suffix;
  queue_table regclass;
BEGIN
  -- A DLQ gathers dead letters with their keys, any number per key: never unique.
  IF qn LIKE '%\_dlq' THEN
    RAISE EXCEPTION 'queue % is a dead-letter queue: unique keys are for the queues jobs are enqueued to', qn
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF to_regclass(format('pgmq.%I', index_name)) IS NOT NULL THEN
    RETURN true;
  END IF;
  queue_table := to_regclass(format('pgmq.%I', 'q_' || qn));
  IF queue_table IS NULL THEN
    RETURN false;
  END IF;
  -- PostgreSQL's unique indexes on a partitioned table must include the partition key
  -- (msg_id), which would make every key unique: say so instead of failing on that.
  IF (SELECT relkind FROM pg_class WHERE oid = queue_table) = 'p' THEN
    RAISE EXCEPTION 'queue % is partitioned: unique keys need one unique index over the whole queue, which a partitioned table cannot have; use a plain or unlogged queue for unique jobs', qn
      USING ERRCODE = 'feature_not_supported';
  END IF;
  -- Two sessions creating it at once would collide in the catalog: serialise per queue.
  PERFORM pg_advisory_xact_lock(hashtext('pgbus.ensure_unique_index'), hashtext(qn));
  EXECUTE format(definition, index_name, 'q_' || qn);
  RETURN true;
END $$;

-- The "until_done" keys of migration 0007, now through ensure_unique_index (same index).
CREATE OR REPLACE FUNCTION pgbus.enable_unique_keys(queue_name text) RETURNS boolean
LANGUAGE sql AS $$
  SELECT pgbus.ensure_unique_index(queue_name, 'unique_key',
    'CREATE UNIQUE INDEX IF NOT EXISTS %I ON pgmq.%I ((coalesce(message ->> ''job'', '''')), (headers ->> ''pgbus_unique_key''))
       WHERE (headers ->> ''pgbus_unique_key'') IS NOT NULL')
$$;

-- The "queued" keys' index (see above).
CREATE FUNCTION pgbus.enable_queued_unique_keys(queue_name text) RETURNS boolean
LANGUAGE sql AS $$
  SELECT pgbus.ensure_unique_index(queue_name, 'unique_queued',
    'CREATE UNIQUE INDEX IF NOT EXISTS %I ON pgmq.%I
       ((coalesce(message ->> ''job'', '''')), (coalesce(headers ->> ''pgbus_unique_queued_key'', headers ->> ''pgbus_unique_key'')))
       WHERE last_read_at IS NULL AND coalesce(headers ->> ''pgbus_unique_queued_key'', headers ->> ''pgbus_unique_key'') IS NOT NULL')
$$;
