-- The queues a wildcard ("*") worker serves: every queue except dead-letter queues and the
-- queues bound to topic patterns, which belong to event subscribers and are run by the
-- consumer. A function, because pgmq.topic_bindings is missing from older pgmq extensions.
CREATE FUNCTION pgbus.job_queues() RETURNS SETOF text
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF to_regclass('pgmq.topic_bindings') IS NULL THEN
    RETURN QUERY SELECT m.queue_name::text FROM pgmq.meta m WHERE m.queue_name::text NOT LIKE '%\_dlq' ORDER BY 1;
  ELSE
    RETURN QUERY EXECUTE
      'SELECT m.queue_name::text FROM pgmq.meta m
        WHERE m.queue_name::text NOT LIKE ''%\_dlq''
          AND NOT EXISTS (SELECT 1 FROM pgmq.topic_bindings b WHERE b.queue_name = m.queue_name)
        ORDER BY 1';
  END IF;
END $$;
