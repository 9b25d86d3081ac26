-- The event bus: idempotent subscribers and the transactional outbox.

-- The event id carried by a message body (`{"event_id": "<uuid>", ...}`), or NULL when the
-- body has none or it is not a uuid (a message a non-pgbus producer wrote by hand). Used
-- to look up pgbus.processed_events without ever failing a claim or an ack on a bad cast.
-- A plain SQL function so the planner inlines it.
CREATE FUNCTION pgbus.event_id_of(message jsonb) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN message ->> 'event_id' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
    THEN (message ->> 'event_id')::uuid
  END
$$;

-- pgbus.processed_events (0001) already fits its two readers: the primary key
-- (subscriber, event_id) serves the claim-time "already handled?" lookup and the ack's
-- ON CONFLICT, and the index on processed_at serves the dispatcher's TTL prune.

-- A row the poller could not move (e.g. its job's queue was dropped) is retried with
-- backoff instead of blocking the rows behind it; attempts and the last error say why.
ALTER TABLE pgbus.outbox
  ADD COLUMN attempts integer NOT NULL DEFAULT 0,
  ADD COLUMN last_error text,
  ADD COLUMN available_at timestamptz NOT NULL DEFAULT '-infinity';

-- Wakes outbox pollers when the writing transaction commits: statement-level, so a batch
-- insert costs one notification, and PostgreSQL folds repeats within a transaction.
CREATE FUNCTION pgbus.notify_outbox_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('pgbus_outbox', '');
  RETURN NULL;
END $$;

CREATE TRIGGER pgbus_outbox_notify AFTER INSERT ON pgbus.outbox
  FOR EACH STATEMENT EXECUTE FUNCTION pgbus.notify_outbox_insert();
