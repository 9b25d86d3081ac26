-- A worker's backstop poll over many queues in one statement (pgbus.queues_with_work),
-- instead of one claim per queue: a `*` worker over 1,000 idle queues used to send 1,000
-- statements a second; it now sends one, and claims only from the queues it names or a
-- notification names.
--
-- pgbus.nonempty_queues: the queues that may hold messages (visible, delayed or in flight).
-- The send path's insert trigger adds the queue (once the row is there an insert only
-- probes the index and locks nothing, so concurrent enqueuers do not queue on it); the
-- poll removes a queue once its table is empty. So an idle poll reads this small table and checks only the queues listed in it, not every queue's table:
-- measured on 1,000 empty queues, an EXISTS per queue (run by EXECUTE) took 110-140 ms
-- a poll, and a prepared UNION ALL of them 30-40 ms; this takes about 1 ms.
CREATE TABLE pgbus.nonempty_queues (queue_name text PRIMARY KEY);
INSERT INTO pgbus.nonempty_queues SELECT queue_name FROM pgmq.meta ON CONFLICT DO NOTHING;

-- The marker is written in the producer's transaction, which may stay open (an enqueue
-- inside the caller's transaction): a second producer inserting the same key would wait on
-- that uncommitted row until it commits. So only the holder of a per-queue transaction
-- lock writes it, and a producer that cannot take the lock at once goes on without: the
-- holder's marker commits with it. (Should the holder roll back, the marker is missing
-- until the next insert; the NOTIFY of the committed producer still wakes the workers.)
CREATE OR REPLACE FUNCTION pgbus.notify_queue_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pgbus.nonempty_queues WHERE queue_name = TG_ARGV[0])
     AND pg_try_advisory_xact_lock(hashtext('pgbus.nonempty_queues'), hashtext(TG_ARGV[0])) THEN
    BEGIN
      INSERT INTO pgbus.nonempty_queues (queue_name) VALUES (TG_ARGV[0]) ON CONFLICT DO NOTHING;
    EXCEPTION WHEN serialization_failure THEN
      -- A REPEATABLE READ or SERIALIZABLE caller whose snapshot predates a marker committed
      -- since: the marker is there, and the caller's enqueue must not fail for it.
      NULL;
    END;
  END IF;
  PERFORM pg_notify('pgbus_queue', TG_ARGV[0]);
  RETURN NULL;
END $$;

-- Which of `queue_names` have a message to claim now. Checked: the queues listed as
-- nonempty, and those whose table lacks pgbus's insert trigger (made by another PGMQ
-- client's create: nothing would list them) or is gone. Paused queues are left out (a
-- resume notifies), except those whose circuit breaker's back-off is over (its probe is
-- due). A gone queue is returned with missing = true, so the worker's claim reports it as
-- before.
--
-- A queue found empty leaves the list only under a SHARE lock on its table taken with
-- NOWAIT: the lock waits for no one and is granted only while no transaction holds an
-- uncommitted insert into it (and holds later ones off until this statement's transaction
-- ends), so an insert that committed after the emptiness check always finds its row gone
-- and adds it again. A busy table (writers at work) simply stays listed.
CREATE FUNCTION pgbus.queues_with_work(queue_names text[])
RETURNS TABLE (queue_name text, missing boolean)
LANGUAGE plpgsql AS $$
DECLARE
  qn text;
  tbl text;
  visible boolean;
BEGIN
  FOR qn IN
    SELECT n.name FROM unnest(queue_names) WITH ORDINALITY AS n(name, ord)
      LEFT JOIN (SELECT substr(c.relname, 3) AS name FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                  WHERE t.tgname = 'pgbus_notify_insert' AND c.relnamespace = 'pgmq'::regnamespace) AS triggered
        ON triggered.name = n.name
      LEFT JOIN pgbus.nonempty_queues w ON w.queue_name = n.name
      -- A circuit breaker's pause whose back-off is over is not a pause here: its probe is due.
      LEFT JOIN pgbus.queue_states s ON s.queue_name = n.name AND s.paused
            AND NOT (s.breaker_state IN ('open', 'half_open') AND s.breaker_until <= clock_timestamp())
     WHERE s.queue_name IS NULL AND (w.queue_name IS NOT NULL OR triggered.name IS NULL)
     ORDER BY n.ord -- in the order given (the worker's priority order), whatever the join plan
  LOOP
    tbl := format('pgmq.%I', 'q_' || pgbus.checked_queue_name(qn));
    IF to_regclass(tbl) IS NULL THEN
      DELETE FROM pgbus.nonempty_queues w WHERE w.queue_name = qn;
      queue_name := qn;
      missing := true;
      RETURN NEXT;
      CONTINUE;
    END IF;
    -- One probe per priority level into the claim index (migration 0010), as the claim
    -- does: a queue full of delayed messages is not scanned to find none due.
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM (VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)) AS level(priority)
                      CROSS JOIN LATERAL (SELECT 1 FROM %s WHERE pgbus.message_priority(headers) = level.priority
                                             AND vt <= clock_timestamp() LIMIT 1) due)', tbl) INTO visible;
    IF visible THEN
      queue_name := qn;
      missing := false;
      RETURN NEXT;
      CONTINUE;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', tbl) INTO visible;
    IF NOT visible THEN
      BEGIN
        EXECUTE format('LOCK TABLE %s IN SHARE MODE NOWAIT', tbl);
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', tbl) INTO visible;
        IF NOT visible THEN
          DELETE FROM pgbus.nonempty_queues w WHERE w.queue_name = qn;
        END IF;
      EXCEPTION WHEN lock_not_available THEN
        NULL; -- writers at work: it stays listed
      END;
    END IF;
  END LOOP;
END $$;
