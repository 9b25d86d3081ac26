-- Unique jobs on partitioned queues (both modes of migrations 0007 and 0011).
--
-- A unique index on a partitioned table must include the partition key (msg_id or
-- enqueued_at), which would make every key unique, so a partitioned queue cannot carry the
-- partial unique indexes of plain and unlogged queues. Its keys live in pgbus.unique_keys
-- instead, one row per keyed message, with two partial unique indexes that mirror the
-- queue-table ones: `until_done` rows hold (queue, job, key) while their message is in the
-- queue (0007's index), `waiting` rows while it was never claimed (0011's index, which also
-- covers unclaimed "until_done" messages). The enqueue's statement (src/queue/unique-sql.ts)
-- writes the key row and the message together, in one statement of the caller's
-- transaction: the key row's INSERT ... ON CONFLICT DO NOTHING waits for an uncommitted
-- holder exactly as the queue-table index does, and a message whose key is taken is not
-- inserted.
--
-- Release: triggers on the partitioned parent (PostgreSQL clones them onto every partition,
-- present and future) delete a message's key row when the row leaves the queue (ack,
-- archive, delete, DLQ move, cancel, purge) and, on its first claim, delete a "queued" key
-- row or mark an "until_done" one no longer waiting: the same transaction as the change, so
-- a crash cannot split them. What no row trigger sees (a partition dropped or truncated,
-- a queue dropped by PGMQ's own drop_queue) leaves a key row whose message is gone: the
-- enqueue that meets such a row checks its holder, deletes the row and takes the key (see
-- findUniqueKeysInTable), so no key leaks.
--
-- The cost, paid only by partitioned queues and only for keyed messages: a second row
-- written per enqueue and deleted per ack (with its three index entries), and a trigger
-- call per claim. Messages without a key only evaluate each trigger's WHEN clause.
CREATE TABLE pgbus.unique_keys (
  queue_name text NOT NULL,
  job text NOT NULL,
  unique_key text NOT NULL,
  -- The holder; enqueued_at too, so that looking it up prunes to one partition of a queue
  -- partitioned by time (a queue partitioned by msg_id prunes on msg_id).
  msg_id bigint NOT NULL,
  enqueued_at timestamptz NOT NULL,
  until_done boolean NOT NULL,
  waiting boolean NOT NULL DEFAULT true,
  CHECK (until_done OR waiting)
);
CREATE UNIQUE INDEX unique_keys_until_done ON pgbus.unique_keys (queue_name, job, unique_key) WHERE until_done;
CREATE UNIQUE INDEX unique_keys_waiting ON pgbus.unique_keys (queue_name, job, unique_key) WHERE waiting;
-- Not unique: a queue dropped and made again restarts its msg_ids, and a key row of the old
-- queue may linger until an enqueue of its key finds it stale.
CREATE INDEX unique_keys_msg ON pgbus.unique_keys (queue_name, msg_id);
-- A row per keyed message in flight, deleted on ack: as hot as a queue table.
ALTER TABLE pgbus.unique_keys SET (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 5000,
  autovacuum_vacuum_insert_scale_factor = 0.0, autovacuum_vacuum_insert_threshold = 20000,
  autovacuum_analyze_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0);

-- The release triggers' function; TG_ARGV[0] is the queue (TG_TABLE_NAME is the partition).
CREATE FUNCTION pgbus.release_unique_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    DELETE FROM pgbus.unique_keys WHERE queue_name = TG_ARGV[0] AND msg_id = OLD.msg_id;
  ELSIF NEW.headers ? 'pgbus_unique_queued_key' THEN
    DELETE FROM pgbus.unique_keys WHERE queue_name = TG_ARGV[0] AND msg_id = NEW.msg_id;
  ELSE
    UPDATE pgbus.unique_keys SET waiting = false WHERE queue_name = TG_ARGV[0] AND msg_id = NEW.msg_id AND waiting;
  END IF;
  RETURN NULL;
END $$;

-- Makes a partitioned queue's key triggers if missing, and takes the keys of the messages
-- already in it (sent with a key header by another client), as a plain queue's new index
-- would. Cheap when the triggers exist: a catalog lookup, no lock.
CREATE FUNCTION pgbus.enable_unique_key_triggers(qn text, queue_table regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  keyed constant text := 'headers ?| ARRAY[''pgbus_unique_key'', ''pgbus_unique_queued_key'']';
BEGIN
  IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = queue_table AND tgname = 'pgbus_unique_keys_claim') THEN
    RETURN;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('pgbus.ensure_unique_index'), hashtext(qn));
  IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = queue_table AND tgname = 'pgbus_unique_keys_claim') THEN
    RETURN;
  END IF;
  EXECUTE format('CREATE TRIGGER pgbus_unique_keys_release AFTER DELETE ON %s FOR EACH ROW WHEN (OLD.%s)
                  EXECUTE FUNCTION pgbus.release_unique_keys(%L)', queue_table, keyed, qn);
  -- Only the first claim (last_read_at was null) releases; a VT extension does not set last_read_at.
  EXECUTE format('CREATE TRIGGER pgbus_unique_keys_claim AFTER UPDATE OF last_read_at ON %s FOR EACH ROW
                  WHEN (OLD.last_read_at IS NULL AND NEW.last_read_at IS NOT NULL AND OLD.%s)
                  EXECUTE FUNCTION pgbus.release_unique_keys(%L)', queue_table, keyed, qn);
  -- CREATE TRIGGER locked the table against writes: these rows cannot change meanwhile.
  EXECUTE format(
    'INSERT INTO pgbus.unique_keys (queue_name, job, unique_key, msg_id, enqueued_at, until_done, waiting)
     SELECT %L, coalesce(message ->> ''job'', ''''), coalesce(headers ->> ''pgbus_unique_queued_key'', headers ->> ''pgbus_unique_key''),
            msg_id, enqueued_at, headers ? ''pgbus_unique_key'', last_read_at IS NULL
       FROM %s WHERE %s AND (headers ? ''pgbus_unique_key'' OR last_read_at IS NULL)
      ORDER BY msg_id
     ON CONFLICT DO NOTHING', qn, queue_table, keyed);
END $$;

-- As in migration 0011, with partitioned queues taking their keys through the triggers above.
CREATE OR REPLACE FUNCTION pgbus.ensure_unique_index(queue_name text, suffix text, definition text) RETURNS boolean
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
  IF (SELECT relkind FROM pg_class WHERE oid = queue_table) = 'p' THEN
    PERFORM pgbus.enable_unique_key_triggers(qn, queue_table);
    RETURN true;
  END IF;
  -- Two sessions creating it at once would collide in the catalog: serialise per queue.
  PERFORM pg_advisory_xact_lock(hashtext('pgbus.ensure_unique_index'), hashtext(qn));
  EXECUTE format(definition, index_name, 'q_' || qn);
  RETURN true;
END $$;

-- As in migration 0006, and a dropped queue's key rows go with it.
CREATE OR REPLACE FUNCTION pgbus.drop_queue(queue_name text, with_dlq boolean DEFAULT true) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  qn text := pgbus.checked_queue_name(queue_name);
  dlq text := qn || '_dlq';
  dropped boolean;
BEGIN
  PERFORM pgbus.lock_queue(qn);
  -- A name too long to have a DLQ has none.
  IF with_dlq AND length(dlq) <= 47 THEN
    PERFORM pgbus.lock_queue(dlq);
  END IF;
  dropped := pgmq.drop_queue(qn);
  IF with_dlq AND length(dlq) <= 47 THEN
    PERFORM pgmq.drop_queue(dlq);
  END IF;
  DELETE FROM pgbus.unique_keys k WHERE k.queue_name = qn;
  RETURN dropped;
END $$;
