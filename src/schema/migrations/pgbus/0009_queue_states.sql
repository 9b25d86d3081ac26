-- Paused queues. A worker's claim reads this table (one primary-key lookup per claim
-- statement, evaluated once), so a pause takes effect with the next claim of every worker
-- on every host, and a worker that dies leaves nothing to clean up. Running jobs finish;
-- enqueues are accepted as usual. PGMQ's own read() ignores it: pausing is a pgbus worker
-- matter, and any PGMQ client can still read the queue.
CREATE TABLE pgbus.queue_states (
  queue_name text PRIMARY KEY,
  paused boolean NOT NULL DEFAULT false,
  paused_at timestamptz,
  paused_by text,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- A resume wakes the queue's workers at once (through the queue's own channel) instead of
-- at their next poll.
CREATE FUNCTION pgbus.notify_queue_state() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT NEW.paused THEN
    PERFORM pg_notify('pgbus_queue', NEW.queue_name);
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER pgbus_queue_state_notify AFTER INSERT OR UPDATE ON pgbus.queue_states
  FOR EACH ROW EXECUTE FUNCTION pgbus.notify_queue_state();
