-- pgbus's own state. Queues themselves live in the pgmq schema.

-- Wakes workers at once when a message arrives: a statement-level trigger, so a batch of
-- 10,000 rows costs one notification, and PostgreSQL folds identical notifications sent
-- in one transaction into one.
CREATE FUNCTION pgbus.notify_queue_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('pgbus_queue', TG_ARGV[0]);
  RETURN NULL;
END $$;

-- pgbus's own name check (pgmq._checked_name is missing when the pgmq extension is used):
-- every pgbus function that builds an identifier from a queue name goes through it.
CREATE FUNCTION pgbus.checked_queue_name(queue_name text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF queue_name IS NULL OR queue_name !~ '^[a-z0-9_]{1,47}$' THEN
    RAISE EXCEPTION 'invalid queue name %: queue names are 1-47 characters of a-z, 0-9 and "_"', quote_literal(coalesce(queue_name, 'NULL'))
      USING ERRCODE = 'invalid_name';
  END IF;
  RETURN queue_name;
END $$;

CREATE FUNCTION pgbus.enable_notify(queue_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  qn text := pgbus.checked_queue_name(queue_name);
BEGIN
  -- Checked first: CREATE TRIGGER locks the table against readers and writers alike.
  IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'pgbus_notify_insert' AND tgrelid = format('pgmq.%I', 'q_' || qn)::regclass) THEN
    RETURN;
  END IF;
  EXECUTE format(
    'CREATE TRIGGER pgbus_notify_insert AFTER INSERT ON pgmq.%I FOR EACH STATEMENT EXECUTE FUNCTION pgbus.notify_queue_insert(%L)',
    'q_' || qn, qn);
END $$;

-- One row per live pgbus process (supervisor, worker, consumer, ...), refreshed by its heartbeat.
CREATE TABLE pgbus.processes (
  id uuid PRIMARY KEY,
  supervisor_id uuid,
  role text NOT NULL,
  host text NOT NULL,
  pid integer NOT NULL,
  execution_mode text,
  capacity integer,
  busy integer NOT NULL DEFAULT 0,
  queues text[] NOT NULL DEFAULT '{}',
  stats jsonb NOT NULL DEFAULT '{}',
  started_at timestamptz NOT NULL DEFAULT now(),
  last_beat_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX processes_last_beat_idx ON pgbus.processes (last_beat_at);

-- Every failed run, for the dashboard and `pgbus status`; pruned by the dispatcher.
CREATE TABLE pgbus.failed_jobs (
  id bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
  queue_name text NOT NULL,
  msg_id bigint NOT NULL,
  job text,
  attempt integer NOT NULL,
  error jsonb NOT NULL,
  outcome text NOT NULL CHECK (outcome IN ('retried', 'dead')),
  failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX failed_jobs_failed_at_idx ON pgbus.failed_jobs (failed_at);

-- Idempotent event handlers: an event id is recorded for a subscriber once its handler succeeded.
CREATE TABLE pgbus.processed_events (
  subscriber text NOT NULL,
  event_id uuid NOT NULL,
  processed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (subscriber, event_id)
);
CREATE INDEX processed_events_processed_at_idx ON pgbus.processed_events (processed_at);

-- Transactional outbox: rows written in the caller's transaction, moved to queues by the outbox poller.
CREATE TABLE pgbus.outbox (
  id bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
  kind text NOT NULL CHECK (kind IN ('job', 'event')),
  target text NOT NULL,
  message jsonb NOT NULL,
  headers jsonb,
  delay_ms integer NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now()
);
