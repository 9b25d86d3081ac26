-- Creating and dropping a queue serialise on one transaction-level advisory lock per
-- queue name, taken through pgmq.acquire_queue_lock: the helper PGMQ's own create,
-- create_partitioned, create_unlogged and drop_queue call (pgmq 1.5 and later), so that
-- pgbus (pgbus.lock_queue calls it too), this plain-SQL API, the pgmq extension and any
-- PGMQ client calling these functions wait on each other instead of colliding in the
-- catalog. Held until the transaction ends: a queue created in a transaction that rolls
-- back leaves nothing behind, and no one builds on it before it commits.

-- The key 0001's create took, kept, so nothing changes for a lock held across the upgrade.
CREATE FUNCTION pgmq.acquire_queue_lock(queue_name text) RETURNS void
LANGUAGE sql AS $$ SELECT pg_advisory_xact_lock(hashtext('pgmq.create'), hashtext(lower(queue_name))) $$;

CREATE OR REPLACE FUNCTION pgmq.create(queue_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  qn text := pgmq._checked_name(queue_name);
BEGIN
  PERFORM pgmq.acquire_queue_lock(qn);
  EXECUTE format(
    'CREATE TABLE IF NOT EXISTS pgmq.%I (
       msg_id bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
       read_ct integer NOT NULL DEFAULT 0,
       enqueued_at timestamptz NOT NULL DEFAULT now(),
       last_read_at timestamptz,
       vt timestamptz NOT NULL,
       message jsonb,
       headers jsonb)', 'q_' || qn);
  EXECUTE format(
    'CREATE TABLE IF NOT EXISTS pgmq.%I (
       msg_id bigint PRIMARY KEY,
       read_ct integer NOT NULL DEFAULT 0,
       enqueued_at timestamptz NOT NULL DEFAULT now(),
       last_read_at timestamptz,
       archived_at timestamptz NOT NULL DEFAULT now(),
       vt timestamptz NOT NULL,
       message jsonb,
       headers jsonb)', 'a_' || qn);
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (vt ASC)', 'q_' || qn || '_vt_idx', 'q_' || qn);
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (archived_at)', 'archived_at_idx_' || qn, 'a_' || qn);
  INSERT INTO pgmq.meta (queue_name) VALUES (qn) ON CONFLICT ON CONSTRAINT meta_queue_name_key DO NOTHING;
END $$;

-- Under the same lock, so a drop never interleaves with a creation of the same queue (a
-- creation half on each side of a drop would leave an archive without its queue).
CREATE OR REPLACE FUNCTION pgmq.drop_queue(queue_name text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  qn text := pgmq._checked_name(queue_name);
BEGIN
  PERFORM pgmq.acquire_queue_lock(qn);
  IF NOT EXISTS (SELECT 1 FROM pgmq.meta m WHERE m.queue_name = qn) THEN
    RETURN false;
  END IF;
  EXECUTE format('DROP TABLE IF EXISTS pgmq.%I', 'q_' || qn);
  EXECUTE format('DROP TABLE IF EXISTS pgmq.%I', 'a_' || qn);
  DELETE FROM pgmq.meta m WHERE m.queue_name = qn;
  DELETE FROM pgmq.topic_bindings b WHERE b.queue_name = qn;
  RETURN true;
END $$;

-- A publish takes each target queue's lock (the key of acquire_queue_lock) in shared mode
-- before sending to it, then looks again for the binding: a drop (which holds the lock exclusively) either ends
-- before, and took the binding with it, so the queue is skipped; or waits until the
-- publishing transaction ends. A queue dropped mid-publish no longer fails the publish
-- for every other subscriber.
CREATE OR REPLACE FUNCTION pgmq.send_topic(routing_key text, msg jsonb, headers jsonb DEFAULT NULL, delay integer DEFAULT 0) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  target text;
  sent integer := 0;
BEGIN
  IF routing_key IS NULL OR routing_key !~ '^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$' THEN
    RAISE EXCEPTION 'invalid routing key %: dot-separated segments of A-Z, a-z, 0-9, "_" and "-"', quote_literal(coalesce(routing_key, 'NULL'))
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  FOR target IN SELECT DISTINCT b.queue_name FROM pgmq.topic_bindings b WHERE routing_key ~ b.compiled_regex ORDER BY 1 LOOP
    PERFORM pg_advisory_xact_lock_shared(hashtext('pgmq.create'), hashtext(lower(target)));
    CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pgmq.topic_bindings b WHERE b.queue_name = target);
    PERFORM pgmq._send(target, ARRAY[msg], ARRAY[headers], clock_timestamp() + make_interval(secs => delay));
    sent := sent + 1;
  END LOOP;
  RETURN sent;
END $$;
