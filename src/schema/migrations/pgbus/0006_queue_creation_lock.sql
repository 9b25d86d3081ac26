-- Queue creation that is safe under any concurrency (issue #12). Making a queue used to
-- be four statements sent by the client (exists? create, add the trigger, tune), each
-- checking and then creating on its own: two processes both saw "no trigger" and the
-- second CREATE TRIGGER failed the caller's enqueue. Now one function makes the whole
-- queue, under the per-queue lock that pgmq's create and drop_queue take, so creators,
-- droppers and subscriber setup of one queue run one after another, in any process,
-- in the caller's transaction or not.

-- The per-queue lock, held until the transaction ends: pgmq's own, so pgmq's create and
-- drop_queue (this project's plain SQL, or the extension's) and pgbus take one lock. Looked
-- up at each call, since the pgmq extension may gain or change it on an upgrade; a pgmq
-- extension older than 1.5 has none (and its create takes no lock), so pgbus's creators
-- then serialise among themselves on the key of pgbus's plain SQL.
CREATE FUNCTION pgbus.lock_queue(queue_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF to_regprocedure('pgmq.acquire_queue_lock(text)') IS NOT NULL THEN
    PERFORM pgmq.acquire_queue_lock(queue_name);
  ELSE
    PERFORM pg_advisory_xact_lock(hashtext('pgmq.create'), hashtext(lower(queue_name)));
  END IF;
END $$;

-- The oid of table pgmq.<table_name>, read from pg_class with the statement's snapshot
-- (to_regclass reads a per-connection name cache, which a transaction refreshes only when
-- it locks a table, so it can lag further). Enough to skip work; not to decide to create.
CREATE FUNCTION pgbus.pgmq_table(table_name text) RETURNS oid
LANGUAGE sql STABLE AS $$
  SELECT c.oid FROM pg_class c WHERE c.relname = table_name AND c.relnamespace = 'pgmq'::regnamespace
$$;

-- Whether table pgmq.<table_name> exists, asked so that the answer is current: locking a
-- table by name first catches up with every catalog change committed before, whatever
-- the transaction's snapshot. A REPEATABLE READ caller whose snapshot predates the queue
-- would otherwise not see it, create it again, and fail on the pgmq.meta row it cannot see.
CREATE FUNCTION pgbus.pgmq_table_exists(table_name text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('LOCK TABLE pgmq.%I IN ACCESS SHARE MODE', table_name);
  RETURN true;
EXCEPTION WHEN undefined_table THEN
  RETURN false;
END $$;

-- Whether a queue has everything pgbus gives it: its table with the insert trigger, and
-- its archive. Reads only the catalog and takes no lock, so a queue that exists costs
-- its users nothing.
CREATE FUNCTION pgbus.queue_ready(queue_name text) RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT pgbus.pgmq_table('a_' || queue_name) IS NOT NULL
     AND EXISTS (SELECT 1 FROM pg_trigger t
                  WHERE t.tgname = 'pgbus_notify_insert' AND t.tgrelid = pgbus.pgmq_table('q_' || queue_name))
$$;

-- The insert trigger, under the queue's lock. OR REPLACE because a REPEATABLE READ
-- caller's snapshot may predate a trigger another transaction committed: the trigger is
-- then replaced by an identical one instead of failing.
CREATE OR REPLACE FUNCTION pgbus.enable_notify(queue_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  qn text := pgbus.checked_queue_name(queue_name);
BEGIN
  PERFORM pgbus.lock_queue(qn);
  -- Checked first: CREATE TRIGGER locks the table against readers and writers alike.
  IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'pgbus_notify_insert' AND tgrelid = pgbus.pgmq_table('q_' || qn)) THEN
    RETURN;
  END IF;
  EXECUTE format(
    'CREATE OR REPLACE TRIGGER pgbus_notify_insert AFTER INSERT ON pgmq.%I FOR EACH STATEMENT EXECUTE FUNCTION pgbus.notify_queue_insert(%L)',
    'q_' || qn, qn);
END $$;

-- One queue, complete: table, archive and their indexes, its pgmq.meta row, the insert
-- trigger, and (when pgbus makes or first takes over the table) the tuning of 0005. A
-- queue another PGMQ client made (plain, unlogged or partitioned) is taken over as it
-- is: it gets the trigger; only plain tables get the storage tuning, which a
-- partitioned table does not accept.
CREATE FUNCTION pgbus.ensure_one_queue(qn text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF pgbus.queue_ready(qn) THEN
    RETURN;
  END IF;
  PERFORM pgbus.lock_queue(qn);
  -- Looked at again under the lock: what another creator committed meanwhile is seen, and
  -- pgmq.create only runs for a missing table.
  IF NOT pgbus.pgmq_table_exists('q_' || qn) OR NOT pgbus.pgmq_table_exists('a_' || qn) THEN
    PERFORM pgmq.create(qn);
  END IF;
  IF NOT pgbus.queue_ready(qn) THEN
    PERFORM pgbus.enable_notify(qn);
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = pgbus.pgmq_table('q_' || qn)) = 'r' THEN
      PERFORM pgbus.tune_queue_table(qn);
    END IF;
  END IF;
END $$;

-- A queue and (with_dlq) its `<queue>_dlq`, in one call, so callers never see one without
-- the other. The queue's lock is taken before its DLQ's, always in that order.
CREATE FUNCTION pgbus.ensure_queue(queue_name text, with_dlq boolean DEFAULT true) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  qn text := pgbus.checked_queue_name(queue_name);
BEGIN
  PERFORM pgbus.ensure_one_queue(qn);
  IF with_dlq THEN
    PERFORM pgbus.ensure_one_queue(pgbus.checked_queue_name(qn || '_dlq'));
  END IF;
END $$;

-- A subscriber's queue and its binding, in one transaction under the queue's lock: a
-- wildcard worker (pgbus.job_queues) never lists the queue unbound, and a concurrent
-- drop cannot leave a binding that points at no queue. Nothing to do (the usual case at
-- a consumer's start): no lock.
CREATE FUNCTION pgbus.ensure_subscription(pattern text, queue_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  qn text := pgbus.checked_queue_name(queue_name);
BEGIN
  IF pgbus.queue_ready(qn) AND pgbus.queue_ready(qn || '_dlq')
     AND EXISTS (SELECT 1 FROM pgmq.topic_bindings b WHERE b.pattern = ensure_subscription.pattern AND b.queue_name = qn) THEN
    RETURN;
  END IF;
  PERFORM pgbus.lock_queue(qn);
  PERFORM pgbus.ensure_queue(qn, true);
  PERFORM pgmq.bind_topic(pattern, qn);
END $$;

-- Drops a queue and (with_dlq) its DLQ in one transaction, under the same locks in the
-- same order as ensure_queue: an enqueue that creates the queue meanwhile gets either
-- both or neither. Returns whether the queue existed.
CREATE FUNCTION pgbus.drop_queue(queue_name text, with_dlq boolean DEFAULT true) RETURNS boolean
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
  RETURN dropped;
END $$;
