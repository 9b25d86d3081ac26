-- A plain-SQL implementation of PGMQ's public API (tables, types and functions), written
-- for pgbus from PGMQ's documented behaviour. Applied only when the pgmq extension is not
-- installed; when it is, the extension is used as is. Any PGMQ client can then produce
-- into and consume from pgbus queues.

CREATE SCHEMA IF NOT EXISTS pgmq;

CREATE TABLE pgmq.meta (
  queue_name varchar UNIQUE NOT NULL,
  is_partitioned boolean NOT NULL DEFAULT false,
  is_unlogged boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TYPE pgmq.message_record AS (
  msg_id bigint,
  read_ct integer,
  enqueued_at timestamptz,
  last_read_at timestamptz,
  vt timestamptz,
  message jsonb,
  headers jsonb
);

CREATE TYPE pgmq.queue_record AS (
  queue_name varchar,
  is_partitioned boolean,
  is_unlogged boolean,
  created_at timestamptz
);

CREATE TYPE pgmq.metrics_result AS (
  queue_name text,
  queue_length bigint,
  newest_msg_age_sec integer,
  oldest_msg_age_sec integer,
  total_messages bigint,
  scrape_time timestamptz,
  queue_visible_length bigint
);

-- Every function that turns a queue name into an identifier goes through this check, so
-- no caller can smuggle SQL through a name. Same rule as the TypeScript client.
CREATE FUNCTION pgmq._checked_name(queue_name text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF queue_name IS NULL OR queue_name !~ '^[a-z0-9_]{1,47}$' THEN
    RAISE EXCEPTION 'invalid queue name %: queue names are 1-47 characters of a-z, 0-9 and "_"', quote_literal(coalesce(queue_name, 'NULL'))
      USING ERRCODE = 'invalid_name';
  END IF;
  RETURN queue_name;
END $$;

CREATE FUNCTION pgmq.create(queue_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  qn text := pgmq._checked_name(queue_name);
BEGIN
  -- Concurrent CREATE TABLE IF NOT EXISTS can still collide in the catalog; serialise per queue.
  PERFORM pg_advisory_xact_lock(hashtext('pgmq.create'), hashtext(qn));
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

CREATE FUNCTION pgmq.drop_queue(queue_name text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  qn text := pgmq._checked_name(queue_name);
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pgmq.meta m WHERE m.queue_name = qn) THEN
    RETURN false;
  END IF;
  EXECUTE format('DROP TABLE IF EXISTS pgmq.%I', 'q_' || qn);
  EXECUTE format('DROP TABLE IF EXISTS pgmq.%I', 'a_' || qn);
  DELETE FROM pgmq.meta m WHERE m.queue_name = qn;
  DELETE FROM pgmq.topic_bindings b WHERE b.queue_name = qn;
  RETURN true;
END $$;

CREATE FUNCTION pgmq.purge_queue(queue_name text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  removed bigint;
BEGIN
  EXECUTE format('DELETE FROM pgmq.%I', 'q_' || pgmq._checked_name(queue_name));
  GET DIAGNOSTICS removed = ROW_COUNT;
  RETURN removed;
END $$;

CREATE FUNCTION pgmq.list_queues() RETURNS SETOF pgmq.queue_record
LANGUAGE sql STABLE AS $$
  SELECT queue_name, is_partitioned, is_unlogged, created_at FROM pgmq.meta ORDER BY queue_name;
$$;

-- send / send_batch: one implementation, the overloads PGMQ documents on top of it.
CREATE FUNCTION pgmq._send(queue_name text, msgs jsonb[], headers jsonb[], visible_at timestamptz) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'INSERT INTO pgmq.%I (vt, message, headers)
     SELECT $1, m.msg, m.hdr FROM unnest($2::jsonb[], $3::jsonb[]) WITH ORDINALITY AS m(msg, hdr, ord)
     WHERE m.ord <= cardinality($2) ORDER BY m.ord
     RETURNING msg_id', 'q_' || pgmq._checked_name(queue_name))
  USING visible_at, msgs, headers;
END $$;

CREATE FUNCTION pgmq.send(queue_name text, msg jsonb) RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pgmq._send(queue_name, ARRAY[msg], NULL, clock_timestamp()) $$;
CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, delay integer) RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pgmq._send(queue_name, ARRAY[msg], NULL, clock_timestamp() + make_interval(secs => delay)) $$;
CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, delay timestamptz) RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pgmq._send(queue_name, ARRAY[msg], NULL, delay) $$;
CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb) RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pgmq._send(queue_name, ARRAY[msg], ARRAY[headers], clock_timestamp()) $$;
CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay integer) RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pgmq._send(queue_name, ARRAY[msg], ARRAY[headers], clock_timestamp() + make_interval(secs => delay)) $$;
CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay timestamptz) RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pgmq._send(queue_name, ARRAY[msg], ARRAY[headers], delay) $$;

CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[]) RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pgmq._send(queue_name, msgs, NULL, clock_timestamp()) $$;
CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay integer) RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pgmq._send(queue_name, msgs, NULL, clock_timestamp() + make_interval(secs => delay)) $$;
CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay timestamptz) RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pgmq._send(queue_name, msgs, NULL, delay) $$;
CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[]) RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pgmq._send(queue_name, msgs, headers, clock_timestamp()) $$;
CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer) RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pgmq._send(queue_name, msgs, headers, clock_timestamp() + make_interval(secs => delay)) $$;
CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamptz) RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pgmq._send(queue_name, msgs, headers, delay) $$;

-- read: the oldest visible messages, skipping rows other readers hold, made invisible for vt seconds.
CREATE FUNCTION pgmq.read(queue_name text, vt integer, qty integer, conditional jsonb DEFAULT '{}') RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'WITH picked AS (
       SELECT msg_id FROM pgmq.%1$I
       WHERE vt <= clock_timestamp() AND ($3 = ''{}''::jsonb OR message @> $3)
       ORDER BY msg_id LIMIT $2
       FOR UPDATE SKIP LOCKED)
     UPDATE pgmq.%1$I q
        SET vt = clock_timestamp() + make_interval(secs => $1), read_ct = q.read_ct + 1, last_read_at = clock_timestamp()
       FROM picked WHERE q.msg_id = picked.msg_id
     RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers',
    'q_' || pgmq._checked_name(queue_name))
  USING vt, qty, coalesce(conditional, '{}'::jsonb);
END $$;

CREATE FUNCTION pgmq.pop(queue_name text) RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'WITH picked AS (
       SELECT msg_id FROM pgmq.%1$I WHERE vt <= clock_timestamp() ORDER BY msg_id LIMIT 1 FOR UPDATE SKIP LOCKED)
     DELETE FROM pgmq.%1$I q USING picked WHERE q.msg_id = picked.msg_id
     RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers',
    'q_' || pgmq._checked_name(queue_name));
END $$;

CREATE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt integer) RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'UPDATE pgmq.%I SET vt = clock_timestamp() + make_interval(secs => $2) WHERE msg_id = $1
     RETURNING msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers',
    'q_' || pgmq._checked_name(queue_name))
  USING msg_id, vt;
END $$;

CREATE FUNCTION pgmq.archive(queue_name text, msg_ids bigint[]) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
  qn text := pgmq._checked_name(queue_name);
BEGIN
  RETURN QUERY EXECUTE format(
    'WITH moved AS (DELETE FROM pgmq.%I WHERE msg_id = ANY($1) RETURNING *)
     INSERT INTO pgmq.%I (msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers)
     SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers FROM moved
     RETURNING msg_id', 'q_' || qn, 'a_' || qn)
  USING msg_ids;
END $$;

CREATE FUNCTION pgmq.archive(queue_name text, msg_id bigint) RETURNS boolean
LANGUAGE sql AS $$ SELECT EXISTS (SELECT 1 FROM pgmq.archive(queue_name, ARRAY[msg_id])) $$;

CREATE FUNCTION pgmq.delete(queue_name text, msg_ids bigint[]) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format('DELETE FROM pgmq.%I WHERE msg_id = ANY($1) RETURNING msg_id', 'q_' || pgmq._checked_name(queue_name))
  USING msg_ids;
END $$;

CREATE FUNCTION pgmq.delete(queue_name text, msg_id bigint) RETURNS boolean
LANGUAGE sql AS $$ SELECT EXISTS (SELECT 1 FROM pgmq.delete(queue_name, ARRAY[msg_id])) $$;

CREATE FUNCTION pgmq.metrics(queue_name text) RETURNS pgmq.metrics_result
LANGUAGE plpgsql AS $$
DECLARE
  qn text := pgmq._checked_name(queue_name);
  result pgmq.metrics_result;
BEGIN
  EXECUTE format(
    'SELECT $1::text, count(*), extract(epoch FROM now() - max(enqueued_at))::integer,
            extract(epoch FROM now() - min(enqueued_at))::integer,
            (SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END FROM pgmq.%I s),
            now(), count(*) FILTER (WHERE vt <= clock_timestamp())
       FROM pgmq.%I', 'q_' || qn || '_msg_id_seq', 'q_' || qn)
  INTO result USING qn;
  RETURN result;
END $$;

CREATE FUNCTION pgmq.metrics_all() RETURNS SETOF pgmq.metrics_result
LANGUAGE sql AS $$ SELECT (pgmq.metrics(m.queue_name)).* FROM pgmq.meta m ORDER BY m.queue_name $$;

-- Topic routing: `*` matches exactly one dot-separated segment, `#` zero or more.
CREATE TABLE pgmq.topic_bindings (
  pattern text NOT NULL,
  queue_name text NOT NULL,
  bound_at timestamptz NOT NULL DEFAULT now(),
  compiled_regex text NOT NULL,
  PRIMARY KEY (pattern, queue_name)
);

CREATE FUNCTION pgmq._topic_regex(pattern text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  segment text;
  regex text := '^';
  after_segment boolean := false; -- a concrete segment was written, so the next one needs a leading dot
BEGIN
  IF pattern IS NULL OR pattern !~ '^(\*|#|[A-Za-z0-9_-]+)(\.(\*|#|[A-Za-z0-9_-]+))*$' THEN
    RAISE EXCEPTION 'invalid topic pattern %: dot-separated segments of A-Z, a-z, 0-9, "_", "-", or the wildcards * and #', quote_literal(coalesce(pattern, 'NULL'))
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  FOREACH segment IN ARRAY string_to_array(pattern, '.') LOOP
    IF segment = '#' THEN
      regex := regex || CASE WHEN after_segment THEN '(\.[^.]+)*' ELSE '([^.]+\.)*' END;
    ELSE
      regex := regex || CASE WHEN after_segment THEN '\.' ELSE '' END || CASE WHEN segment = '*' THEN '[^.]+' ELSE segment END;
      after_segment := true;
    END IF;
  END LOOP;
  -- A pattern of only `#` segments matches every key.
  RETURN CASE WHEN after_segment THEN regex || '$' ELSE '^.*$' END;
END $$;

CREATE FUNCTION pgmq.bind_topic(pattern text, queue_name text) RETURNS void
LANGUAGE sql AS $$
  INSERT INTO pgmq.topic_bindings (pattern, queue_name, compiled_regex)
  VALUES (pattern, pgmq._checked_name(queue_name), pgmq._topic_regex(pattern))
  ON CONFLICT ON CONSTRAINT topic_bindings_pkey DO NOTHING;
$$;

CREATE FUNCTION pgmq.unbind_topic(pattern text, queue_name text) RETURNS boolean
LANGUAGE sql AS $$
  WITH removed AS (DELETE FROM pgmq.topic_bindings b WHERE b.pattern = $1 AND b.queue_name = $2 RETURNING 1)
  SELECT EXISTS (SELECT 1 FROM removed);
$$;

-- Sends one copy to every queue with a matching binding; returns how many queues got it.
CREATE FUNCTION pgmq.send_topic(routing_key text, msg jsonb, headers jsonb DEFAULT NULL, delay integer DEFAULT 0) RETURNS integer
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
    PERFORM pgmq._send(target, ARRAY[msg], ARRAY[headers], clock_timestamp() + make_interval(secs => delay));
    sent := sent + 1;
  END LOOP;
  RETURN sent;
END $$;
