-- The backstop poll's due check (pgbus.queues_with_work, migration 0017) bounded its probe
-- of each priority level by clock_timestamp(). That function is volatile, so the bound was
-- a filter, not an index condition: a queue with no message due but many delayed ones had
-- its every delayed message read by each poll (100,000 of them: about 100 ms of database
-- time a poll, every poll interval, for every worker). The bound is now
-- statement_timestamp(), as in the claim itself (src/queue/sql.ts, dueRows): the probe
-- reaches only due rows. The rest of the function is unchanged.

CREATE OR REPLACE FUNCTION pgbus.queues_with_work(queue_names text[])
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
    -- does, bounded by statement_timestamp(): a stable bound, so an index condition, and a
    -- queue full of delayed messages is not scanned to find none due.
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM (VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)) AS level(priority)
                      CROSS JOIN LATERAL (SELECT 1 FROM %s WHERE pgbus.message_priority(headers) = level.priority
                                             AND vt <= statement_timestamp() LIMIT 1) due)', tbl) INTO visible;
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
