-- Batches (bus.batch): one row per batch. Its jobs carry the batch id in the header
-- `pgbus_batch`. The statement that acks a batch job (or moves it to the DLQ) bumps the
-- counters in the same transaction; the update that makes `succeeded + dead` reach `total`
-- on a sealed batch sets finished_at, and the trigger below enqueues the callbacks in that
-- same transaction. Two jobs finishing at once in two processes update the same row one
-- after the other (row lock; the second re-reads the first's counts), so exactly one
-- update sees the batch finish, and each callback is enqueued once.
CREATE TABLE pgbus.batches (
  id text PRIMARY KEY,
  context jsonb,
  -- [{ "on": "finish" | "success" | "dead", "queue": ..., "job": ..., "context": ... }]
  callbacks jsonb NOT NULL,
  total integer NOT NULL DEFAULT 0,
  succeeded integer NOT NULL DEFAULT 0,
  dead integer NOT NULL DEFAULT 0,
  -- No job is added after sealing; a batch finishes only once sealed, so its callbacks
  -- cannot fire while jobs are still being added.
  sealed boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
);
CREATE INDEX batches_unfinished_idx ON pgbus.batches (created_at) WHERE finished_at IS NULL;

CREATE FUNCTION pgbus.enqueue_batch_callbacks() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  callback jsonb;
BEGIN
  FOR callback IN SELECT value FROM jsonb_array_elements(NEW.callbacks) LOOP
    IF callback ->> 'on' = 'finish'
       OR (callback ->> 'on' = 'success' AND NEW.dead = 0)
       OR (callback ->> 'on' = 'dead' AND NEW.dead > 0) THEN
      -- The queue name was validated when the batch was made; %I quotes it all the same.
      EXECUTE format('INSERT INTO pgmq.%I (vt, message) VALUES (clock_timestamp(), $1)', 'q_' || (callback ->> 'queue'))
        USING jsonb_build_object(
          'job', callback ->> 'job',
          'payload', jsonb_build_object(
            'batchId', NEW.id, 'succeeded', NEW.succeeded, 'dead', NEW.dead, 'total', NEW.total,
            'context', CASE WHEN callback ? 'context' THEN callback -> 'context' ELSE NEW.context END));
    END IF;
  END LOOP;
  RETURN NULL;
END $$;

CREATE TRIGGER pgbus_batch_finished AFTER UPDATE OF finished_at ON pgbus.batches
  FOR EACH ROW WHEN (OLD.finished_at IS NULL AND NEW.finished_at IS NOT NULL)
  EXECUTE FUNCTION pgbus.enqueue_batch_callbacks();

-- The circuit breaker of a queue (opt-in, configured by the workers that run the queue).
-- `paused` stays the one flag every claim checks: an open breaker sets it too, and
-- breaker_state says the pause is the breaker's (a manual pause sets the state back to
-- 'closed' and holds until a manual resume). A half-open breaker lets one probe job
-- through: the claim that takes it moves the state to 'half_open' (one row, so one claim
-- wins across all processes) until breaker_until, the probe's VT.
ALTER TABLE pgbus.queue_states
  ADD COLUMN breaker_threshold integer,
  ADD COLUMN breaker_base_ms integer,
  ADD COLUMN breaker_max_ms integer,
  ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0,
  ADD COLUMN breaker_state text NOT NULL DEFAULT 'closed' CHECK (breaker_state IN ('closed', 'open', 'half_open')),
  ADD COLUMN breaker_backoff_ms integer,
  ADD COLUMN breaker_until timestamptz,
  ADD COLUMN breaker_probe_msg_id bigint,
  ADD COLUMN breaker_opened_at timestamptz,
  -- The failed run (message id and attempt) that last opened the breaker, so the worker
  -- whose failure opened it, and only that one, reports it.
  ADD COLUMN breaker_tripped_by bigint,
  ADD COLUMN breaker_tripped_attempt integer;

-- Counts failed runs in the statement that records them (every retry and dead-letter
-- inserts into failed_jobs), so the count is right across any number of processes.
-- Messages that never ran (unknown job, invalid payload or message) say nothing about the
-- queue's health and are not counted.
CREATE FUNCTION pgbus.count_breaker_failure() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  state pgbus.queue_states;
  backoff integer;
BEGIN
  IF NEW.error ->> 'reason' IN ('unknown_job', 'invalid_payload', 'invalid_message') THEN
    RETURN NULL;
  END IF;
  UPDATE pgbus.queue_states SET consecutive_failures = consecutive_failures + 1, updated_at = now()
   WHERE queue_name = NEW.queue_name AND breaker_threshold IS NOT NULL
  RETURNING * INTO state;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  IF state.breaker_state = 'half_open' AND state.breaker_probe_msg_id = NEW.msg_id THEN
    backoff := least(coalesce(state.breaker_backoff_ms, state.breaker_base_ms)::bigint * 2, state.breaker_max_ms);
  ELSIF state.breaker_state = 'closed' AND NOT state.paused AND state.consecutive_failures >= state.breaker_threshold THEN
    backoff := state.breaker_base_ms;
  ELSE
    RETURN NULL;
  END IF;
  UPDATE pgbus.queue_states
     SET paused = true, paused_at = coalesce(paused_at, now()), paused_by = 'circuit breaker',
         breaker_state = 'open', breaker_backoff_ms = backoff,
         breaker_until = clock_timestamp() + backoff * interval '1 millisecond',
         breaker_probe_msg_id = NULL, breaker_opened_at = coalesce(breaker_opened_at, now()),
         breaker_tripped_by = NEW.msg_id, breaker_tripped_attempt = NEW.attempt, updated_at = now()
   WHERE queue_name = NEW.queue_name;
  RETURN NULL;
END $$;

CREATE TRIGGER pgbus_count_breaker_failure AFTER INSERT ON pgbus.failed_jobs
  FOR EACH ROW EXECUTE FUNCTION pgbus.count_breaker_failure();
