-- PGMQ parity: brings the plain-SQL pgmq schema of 0001 to PGMQ's current public API and
-- behaviour (PGMQ 1.11), function by function, error cases included. Written for pgbus
-- from PGMQ's documentation and regression suites (test/pgmq/), which the conformance test
-- runs against this schema. Applied only when the pgmq extension is not installed.
--
-- What changes for SQL callers:
-- - Queue names follow PGMQ's rule, not pgbus's: any name without `$`, `;`, `--` or `'`,
--   at most 47 characters; tables are `q_`/`a_` plus the lower-cased name, always quoted.
--   pgbus's stricter rule for the queues its jobs use stays in the TypeScript layer and in
--   pgbus.checked_queue_name.
-- - Topic patterns compile as PGMQ compiles them: `*` is one segment, `#` becomes `.*` in
--   place, so `a.#` matches `a.b` and `a.b.c` but not `a`, and `#.a` does not match `a`.
-- - bind_topic refuses a queue that does not exist (the binding would make every matching
--   send_topic fail); bindings, and notification throttles, go with their queue.
-- - New: read_with_poll, pop(queue, qty), set_vt by timestamp and by id array,
--   create_unlogged, create_partitioned, convert_archive_partitioned (pg_partman),
--   detach_archive, drop_queue(queue, partitioned), format_table_name, validate_queue_name,
--   acquire_queue_lock, the FIFO reads read_grouped[_rr][_with_poll], create_fifo_index(es_all),
--   the insert notifications (enable/disable/update_notify_insert,
--   list_notify_insert_throttles), and the topic functions validate_routing_key,
--   validate_topic_pattern, test_routing, list_topic_bindings, send_topic(text, jsonb[, integer]),
--   send_batch_topic in its six forms.
--
-- Queue creation and dropping keep the per-queue advisory lock of 0001
-- (hashtext('pgmq.create'), hashtext(name)), taken through pgmq.acquire_queue_lock.

------------------------------------------------------------------ names and locks

CREATE OR REPLACE FUNCTION pgmq.format_table_name(queue_name text, prefix text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  -- The four sequences that could end a literal or a statement if a name were ever spliced
  -- in unquoted; every identifier built here is quoted with %I besides.
  IF position('$' IN queue_name) > 0 OR position(';' IN queue_name) > 0
     OR position('--' IN queue_name) > 0 OR position('''' IN queue_name) > 0 THEN
    RAISE EXCEPTION 'queue name contains invalid characters: $, ;, --, or \''';
  END IF;
  RETURN lower(prefix || '_' || queue_name);
END $$;

CREATE OR REPLACE FUNCTION pgmq.validate_queue_name(queue_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  -- pg_partman's template table is template_pgmq_q_<name>: 16 + 47 = 63 bytes, the identifier limit.
  IF length(queue_name) > 47 THEN
    RAISE EXCEPTION 'queue name is too long, maximum length is 47 characters';
  END IF;
END $$;

-- The same key 0001's create took, so creation, dropping and topic sends of one queue
-- serialise whichever version of a function takes it. Names are compared lower-cased, as
-- their tables are.
CREATE OR REPLACE FUNCTION pgmq.acquire_queue_lock(queue_name text) RETURNS void
LANGUAGE sql AS $$
  SELECT pg_advisory_xact_lock(hashtext('pgmq.create'), hashtext(lower(queue_name)));
$$;

------------------------------------------------------------------ tables

-- Per-queue throttles of the insert notifications (enable_notify_insert). Unlogged: after a
-- crash the throttles are gone with the triggers still there, which only means no
-- notifications until enable_notify_insert runs again, as in PGMQ.
CREATE UNLOGGED TABLE pgmq.notify_insert_throttle (
  queue_name varchar UNIQUE NOT NULL
    CONSTRAINT notify_insert_throttle_meta_queue_name_fk REFERENCES pgmq.meta (queue_name) ON DELETE CASCADE,
  throttle_interval_ms integer NOT NULL DEFAULT 0,
  last_notified_at timestamptz NOT NULL DEFAULT to_timestamp(0)
);
CREATE INDEX idx_notify_throttle_active ON pgmq.notify_insert_throttle (queue_name, last_notified_at)
  WHERE throttle_interval_ms > 0;

-- Topic patterns: `*` stands for one segment ([^.]+); `#` is replaced in place by `.*`;
-- every other regex metacharacter is escaped. Anchored at both ends.
CREATE OR REPLACE FUNCTION pgmq._compile_topic_pattern(pattern text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT '^' || translate_wildcards || '$'
    FROM (SELECT replace(replace(regexp_replace(pattern, '([].+?{}()|[\\^$])', '\\\1', 'g'), '*', '[^.]+'), '#', '.*')
                 AS translate_wildcards) compiled;
$$;

-- A binding to a queue that does not exist would make every matching send_topic fail, so
-- dangling bindings (possible before this migration) are removed, and from now on the
-- foreign key keeps them out and drops a queue's bindings with it.
DO $$
DECLARE
  dangling record;
BEGIN
  FOR dangling IN
    SELECT b.pattern, b.queue_name FROM pgmq.topic_bindings b
     WHERE NOT EXISTS (SELECT 1 FROM pgmq.meta m WHERE m.queue_name = b.queue_name)
  LOOP
    RAISE NOTICE 'removing topic binding % -> % : the queue does not exist', dangling.pattern, dangling.queue_name;
    DELETE FROM pgmq.topic_bindings b WHERE b.pattern = dangling.pattern AND b.queue_name = dangling.queue_name;
  END LOOP;
END $$;

ALTER TABLE pgmq.topic_bindings DROP COLUMN compiled_regex;
ALTER TABLE pgmq.topic_bindings
  ADD COLUMN compiled_regex text GENERATED ALWAYS AS (pgmq._compile_topic_pattern(pattern)) STORED,
  ADD CONSTRAINT topic_bindings_meta_queue_name_fk FOREIGN KEY (queue_name) REFERENCES pgmq.meta (queue_name) ON DELETE CASCADE,
  ADD CONSTRAINT topic_bindings_unique_pattern_queue UNIQUE (pattern, queue_name);
ALTER TABLE pgmq.topic_bindings DROP CONSTRAINT topic_bindings_pkey;
CREATE INDEX idx_topic_bindings_covering ON pgmq.topic_bindings (pattern) INCLUDE (queue_name, compiled_regex);

-- Kept for callers of 0001's helper (pgbus's own tests compare against it): now the same
-- compilation as the bindings' column.
CREATE OR REPLACE FUNCTION pgmq._topic_regex(pattern text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  PERFORM pgmq.validate_topic_pattern(pattern);
  RETURN pgmq._compile_topic_pattern(pattern);
END $$;

------------------------------------------------------------------ creating and dropping queues

CREATE OR REPLACE FUNCTION pgmq._create_queue_tables(queue_name text, unlogged boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  q text := pgmq.format_table_name(queue_name, 'q');
  a text := pgmq.format_table_name(queue_name, 'a');
BEGIN
  PERFORM pgmq.validate_queue_name(queue_name);
  PERFORM pgmq.acquire_queue_lock(queue_name);
  EXECUTE format(
    'CREATE %s TABLE IF NOT EXISTS pgmq.%I (
       msg_id bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
       read_ct integer NOT NULL DEFAULT 0,
       enqueued_at timestamptz NOT NULL DEFAULT now(),
       last_read_at timestamptz,
       vt timestamptz NOT NULL,
       message jsonb,
       headers jsonb)', CASE WHEN unlogged THEN 'UNLOGGED' ELSE '' END, q);
  -- The archive stays logged even for an unlogged queue: what was acked is kept.
  EXECUTE format(
    'CREATE TABLE IF NOT EXISTS pgmq.%I (
       msg_id bigint PRIMARY KEY,
       read_ct integer NOT NULL DEFAULT 0,
       enqueued_at timestamptz NOT NULL DEFAULT now(),
       last_read_at timestamptz,
       archived_at timestamptz NOT NULL DEFAULT now(),
       vt timestamptz NOT NULL,
       message jsonb,
       headers jsonb)', a);
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (vt ASC)', q || '_vt_idx', q);
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (archived_at)', 'archived_at_idx_' || queue_name, a);
  INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged) VALUES (queue_name, false, unlogged)
    ON CONFLICT ON CONSTRAINT meta_queue_name_key DO NOTHING;
END $$;

CREATE OR REPLACE FUNCTION pgmq.create_non_partitioned(queue_name text) RETURNS void
LANGUAGE sql AS $$ SELECT pgmq._create_queue_tables(queue_name, false) $$;

CREATE OR REPLACE FUNCTION pgmq.create(queue_name text) RETURNS void
LANGUAGE sql AS $$ SELECT pgmq._create_queue_tables(queue_name, false) $$;

CREATE OR REPLACE FUNCTION pgmq.create_unlogged(queue_name text) RETURNS void
LANGUAGE sql AS $$ SELECT pgmq._create_queue_tables(queue_name, true) $$;

-- pg_partman: where it is installed, and its major version (4 says 'native', 5 'range').
CREATE OR REPLACE FUNCTION pgmq._get_pg_partman_schema() RETURNS text
LANGUAGE sql STABLE AS $$ SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_partman' $$;

CREATE OR REPLACE FUNCTION pgmq._get_pg_partman_major_version() RETURNS integer
LANGUAGE sql STABLE AS $$ SELECT split_part(extversion, '.', 1)::integer FROM pg_extension WHERE extname = 'pg_partman' $$;

CREATE OR REPLACE FUNCTION pgmq._ensure_pg_partman_installed() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF pgmq._get_pg_partman_schema() IS NULL THEN
    RAISE EXCEPTION 'pg_partman is required for partitioned queues';
  END IF;
END $$;

-- A partition interval that reads as an integer partitions by msg_id (so many ids per
-- partition); anything else is a time interval and partitions by enqueue time.
CREATE OR REPLACE FUNCTION pgmq._get_partition_col(partition_interval text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  RETURN CASE WHEN partition_interval ~ '^\s*[+-]?\d+\s*$' THEN 'msg_id' ELSE 'enqueued_at' END;
END $$;

-- Hands a partitioned table to pg_partman with the given interval and retention. Retention
-- drops whole partitions (retention_keep_table false) during pg_partman's maintenance.
CREATE OR REPLACE FUNCTION pgmq._partman_manage(parent text, control text, partition_interval text, retention text, keep_index boolean)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  partman text := pgmq._get_pg_partman_schema();
BEGIN
  EXECUTE format('SELECT %I.create_parent(p_parent_table := $1, p_control := $2, p_interval := $3, p_type := $4)', partman)
    USING parent, control, partition_interval, CASE WHEN pgmq._get_pg_partman_major_version() >= 5 THEN 'range' ELSE 'native' END;
  EXECUTE format(
    'UPDATE %I.part_config SET retention = $1, retention_keep_table = false, retention_keep_index = $2,
        automatic_maintenance = ''on'' WHERE parent_table = $3', partman)
    USING retention, keep_index, parent;
END $$;

CREATE OR REPLACE FUNCTION pgmq.create_partitioned(
  queue_name text, partition_interval text DEFAULT '10000', retention_interval text DEFAULT '100000'
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  q text := pgmq.format_table_name(queue_name, 'q');
  a text := pgmq.format_table_name(queue_name, 'a');
  q_col text;
  a_col text;
BEGIN
  PERFORM pgmq.validate_queue_name(queue_name);
  PERFORM pgmq.acquire_queue_lock(queue_name);
  PERFORM pgmq._ensure_pg_partman_installed();
  q_col := pgmq._get_partition_col(partition_interval);
  a_col := CASE WHEN q_col = 'enqueued_at' THEN 'archived_at' ELSE q_col END;
  IF EXISTS (SELECT 1 FROM pgmq.meta m WHERE m.queue_name = create_partitioned.queue_name) THEN
    RETURN;
  END IF;

  -- No primary key: a partitioned table's unique keys must include the partition column.
  EXECUTE format(
    'CREATE TABLE IF NOT EXISTS pgmq.%I (
       msg_id bigint GENERATED ALWAYS AS IDENTITY,
       read_ct integer NOT NULL DEFAULT 0,
       enqueued_at timestamptz NOT NULL DEFAULT now(),
       last_read_at timestamptz,
       vt timestamptz NOT NULL,
       message jsonb,
       headers jsonb) PARTITION BY RANGE (%I)', q, q_col);
  PERFORM pgmq._partman_manage('pgmq.' || q, q_col, partition_interval, retention_interval, true);
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (%I)', q || '_part_idx', q, q_col);
  INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged) VALUES (queue_name, true, false)
    ON CONFLICT ON CONSTRAINT meta_queue_name_key DO NOTHING;

  EXECUTE format(
    'CREATE TABLE IF NOT EXISTS pgmq.%I (
       msg_id bigint NOT NULL,
       read_ct integer NOT NULL DEFAULT 0,
       enqueued_at timestamptz NOT NULL DEFAULT now(),
       last_read_at timestamptz,
       archived_at timestamptz NOT NULL DEFAULT now(),
       vt timestamptz NOT NULL,
       message jsonb,
       headers jsonb) PARTITION BY RANGE (%I)', a, a_col);
  PERFORM pgmq._partman_manage('pgmq.' || a, a_col, partition_interval, retention_interval, true);
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (archived_at)', 'archived_at_idx_' || queue_name, a);
END $$;

-- Turns a queue's plain archive into a pg_partman-managed partitioned one. The old table is
-- kept, renamed `<archive>_old`, with its rows, for the caller to move or drop.
CREATE OR REPLACE FUNCTION pgmq.convert_archive_partitioned(
  table_name text, partition_interval text DEFAULT '10000', retention_interval text DEFAULT '100000',
  leading_partition integer DEFAULT 10
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  a text := pgmq.format_table_name(table_name, 'a');
  kind "char";
  a_col text;
  partman text;
BEGIN
  SELECT c.relkind INTO kind FROM pg_class c WHERE c.relnamespace = 'pgmq'::regnamespace AND c.relname = a;
  IF kind = 'p' THEN
    RAISE NOTICE 'Table %s is already partitioned', a;
    RETURN;
  ELSIF kind IS DISTINCT FROM 'r' THEN
    RAISE NOTICE 'Table %s does not exists', a;
    RETURN;
  END IF;
  PERFORM pgmq._ensure_pg_partman_installed();
  partman := pgmq._get_pg_partman_schema();
  a_col := CASE WHEN pgmq._get_partition_col(partition_interval) = 'msg_id' THEN 'msg_id' ELSE 'archived_at' END;

  EXECUTE format('ALTER TABLE pgmq.%I RENAME TO %I', a, a || '_old');
  -- By time, the old primary key (msg_id alone) cannot carry over: unique keys of a
  -- partitioned table must include archived_at. By msg_id, everything carries over.
  IF a_col = 'archived_at' THEN
    EXECUTE format('CREATE TABLE pgmq.%I (LIKE pgmq.%I INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMMENTS)
                    PARTITION BY RANGE (archived_at)', a, a || '_old');
  ELSE
    EXECUTE format('CREATE TABLE pgmq.%I (LIKE pgmq.%I INCLUDING ALL) PARTITION BY RANGE (msg_id)', a, a || '_old');
  END IF;
  EXECUTE 'ALTER INDEX pgmq.archived_at_idx_' || table_name || ' RENAME TO archived_at_idx_' || table_name || '_old';
  EXECUTE format('CREATE INDEX %I ON pgmq.%I (archived_at)', 'archived_at_idx_' || table_name, a);
  EXECUTE format('SELECT %I.create_parent(p_parent_table := $1, p_control := $2, p_interval := $3, p_type := $4)', partman)
    USING 'pgmq.' || a, a_col, partition_interval, CASE WHEN pgmq._get_pg_partman_major_version() >= 5 THEN 'range' ELSE 'native' END;
  EXECUTE format(
    'UPDATE %I.part_config SET retention = $1, retention_keep_table = false, retention_keep_index = false,
        infinite_time_partitions = true WHERE parent_table = $2', partman)
    USING retention_interval, 'pgmq.' || a;
END $$;

DROP FUNCTION pgmq.drop_queue(text);
CREATE FUNCTION pgmq.drop_queue(queue_name text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  q text := pgmq.format_table_name(queue_name, 'q');
  a text := pgmq.format_table_name(queue_name, 'a');
  partitioned boolean;
BEGIN
  PERFORM pgmq.acquire_queue_lock(queue_name);
  SELECT m.is_partitioned INTO partitioned FROM pgmq.meta m WHERE m.queue_name = drop_queue.queue_name;
  IF to_regclass(format('pgmq.%I', q)) IS NULL THEN
    RAISE NOTICE 'pgmq queue `%` does not exist', queue_name;
    RETURN false;
  END IF;
  EXECUTE format('DROP TABLE IF EXISTS pgmq.%I', q);
  EXECUTE format('DROP TABLE IF EXISTS pgmq.%I', a);
  -- Bindings and notification throttles go with the meta row (ON DELETE CASCADE).
  DELETE FROM pgmq.meta m WHERE m.queue_name = drop_queue.queue_name;
  IF partitioned AND pgmq._get_pg_partman_schema() IS NOT NULL THEN
    EXECUTE format('DELETE FROM %I.part_config WHERE parent_table IN ($1, $2)', pgmq._get_pg_partman_schema())
      USING 'pgmq.' || q, 'pgmq.' || a;
  END IF;
  RETURN true;
END $$;

CREATE OR REPLACE FUNCTION pgmq.drop_queue(queue_name text, partitioned boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  RAISE WARNING 'drop_queue(queue_name, partitioned) is deprecated and will be removed in PGMQ v2.0. Use drop_queue(queue_name) instead';
  PERFORM pgmq.drop_queue(queue_name);
  RETURN true;
END $$;

CREATE OR REPLACE FUNCTION pgmq.detach_archive(queue_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgmq.format_table_name(queue_name, 'a');
  RAISE WARNING 'detach_archive(queue_name) is deprecated and is a no-op. It will be removed in PGMQ v2.0. Archive tables are no longer member objects.';
END $$;

-- Deletes every message; returns how many. A DELETE rather than a TRUNCATE, so it takes no
-- table lock that would stall workers claiming from the queue.
CREATE OR REPLACE FUNCTION pgmq.purge_queue(queue_name text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  removed bigint;
BEGIN
  EXECUTE format('DELETE FROM pgmq.%I', pgmq.format_table_name(queue_name, 'q'));
  GET DIAGNOSTICS removed = ROW_COUNT;
  RETURN removed;
END $$;

CREATE OR REPLACE FUNCTION pgmq.list_queues() RETURNS SETOF pgmq.queue_record
LANGUAGE sql STABLE AS $$
  SELECT queue_name, is_partitioned, is_unlogged, created_at FROM pgmq.meta ORDER BY created_at, queue_name;
$$;

------------------------------------------------------------------ sending

CREATE OR REPLACE FUNCTION pgmq._check_batch(msgs jsonb[], headers jsonb[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF coalesce(cardinality(msgs), 0) = 0 THEN
    RAISE EXCEPTION 'msgs cannot be NULL or empty';
  END IF;
  IF headers IS NOT NULL AND cardinality(headers) <> cardinality(msgs) THEN
    RAISE EXCEPTION 'headers array length (%) must match msgs array length (%)', cardinality(headers), cardinality(msgs);
  END IF;
END $$;

-- Inserts msgs (with headers, by position) visible at visible_at; the ids in order. No
-- checks: the public functions check what PGMQ checks.
CREATE OR REPLACE FUNCTION pgmq._send(queue_name text, msgs jsonb[], headers jsonb[], visible_at timestamptz) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'INSERT INTO pgmq.%I (vt, message, headers)
     SELECT $1, m.msg, m.hdr FROM unnest($2::jsonb[], $3::jsonb[]) WITH ORDINALITY AS m(msg, hdr, ord)
     WHERE m.ord <= cardinality($2) ORDER BY m.ord
     RETURNING msg_id', pgmq.format_table_name(queue_name, 'q'))
  USING visible_at, msgs, headers;
END $$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[]) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgmq._check_batch(msgs, NULL);
  RETURN QUERY SELECT pgmq._send(queue_name, msgs, NULL, clock_timestamp());
END $$;
CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay integer) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgmq._check_batch(msgs, NULL);
  RETURN QUERY SELECT pgmq._send(queue_name, msgs, NULL, clock_timestamp() + make_interval(secs => delay));
END $$;
CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay timestamptz) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgmq._check_batch(msgs, NULL);
  RETURN QUERY SELECT pgmq._send(queue_name, msgs, NULL, delay);
END $$;
CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[]) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgmq._check_batch(msgs, headers);
  RETURN QUERY SELECT pgmq._send(queue_name, msgs, headers, clock_timestamp());
END $$;
CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgmq._check_batch(msgs, headers);
  RETURN QUERY SELECT pgmq._send(queue_name, msgs, headers, clock_timestamp() + make_interval(secs => delay));
END $$;
CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamptz) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgmq._check_batch(msgs, headers);
  RETURN QUERY SELECT pgmq._send(queue_name, msgs, headers, delay);
END $$;

------------------------------------------------------------------ reading

CREATE OR REPLACE FUNCTION pgmq.read(queue_name text, vt integer, qty integer, conditional jsonb DEFAULT '{}') RETURNS SETOF pgmq.message_record
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
    pgmq.format_table_name(queue_name, 'q'))
  USING vt, qty, coalesce(conditional, '{}'::jsonb);
END $$;

-- Reads like read(); when nothing is visible, tries again every poll_interval_ms until
-- max_poll_seconds have passed. Each try sees what committed before it.
CREATE OR REPLACE FUNCTION pgmq.read_with_poll(
  queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100,
  conditional jsonb DEFAULT '{}'
) RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql AS $$
DECLARE
  give_up_at timestamptz := clock_timestamp() + make_interval(secs => max_poll_seconds);
  got bigint;
BEGIN
  WHILE clock_timestamp() < give_up_at LOOP
    RETURN QUERY SELECT * FROM pgmq.read(queue_name, vt, qty, conditional);
    GET DIAGNOSTICS got = ROW_COUNT;
    IF got > 0 THEN
      RETURN;
    END IF;
    PERFORM pg_sleep(poll_interval_ms / 1000.0);
  END LOOP;
END $$;

DROP FUNCTION pgmq.pop(text);
CREATE FUNCTION pgmq.pop(queue_name text, qty integer DEFAULT 1) RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'WITH picked AS (
       SELECT msg_id FROM pgmq.%1$I WHERE vt <= clock_timestamp() ORDER BY msg_id LIMIT $1 FOR UPDATE SKIP LOCKED)
     DELETE FROM pgmq.%1$I q USING picked WHERE q.msg_id = picked.msg_id
     RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers',
    pgmq.format_table_name(queue_name, 'q'))
  USING qty;
END $$;

------------------------------------------------------------------ FIFO groups
-- A message's group is its header `x-pgmq-group` (no header: one shared default group).
-- A group is served only while its oldest message is visible, so a group whose head is
-- being worked on (or waits for a retry) yields nothing, and messages of one group are
-- handed out in msg_id order, never two readers at once on one group's head.

CREATE OR REPLACE FUNCTION pgmq._fifo_read(queue_name text, vt integer, qty integer, round_robin boolean) RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    $sql$
    WITH heads AS (
      -- every group's oldest message, visible or not
      SELECT DISTINCT ON (coalesce(headers->>'x-pgmq-group', '_default_fifo_group'))
             coalesce(headers->>'x-pgmq-group', '_default_fifo_group') AS grp, msg_id AS head, vt AS head_vt
        FROM pgmq.%1$I
       ORDER BY coalesce(headers->>'x-pgmq-group', '_default_fifo_group'), msg_id),
    open_groups AS (
      -- groups whose head is visible; one reader per group (of this queue) at a time
      SELECT grp, head, row_number() OVER (ORDER BY head) AS group_rank
        FROM heads
       WHERE head_vt <= clock_timestamp()
         AND pg_try_advisory_xact_lock(hashtextextended(%2$L || ':' || grp, 0))),
    candidates AS (
      SELECT m.msg_id, o.group_rank,
             row_number() OVER (PARTITION BY o.grp ORDER BY m.msg_id) AS rank_in_group
        FROM open_groups o
        CROSS JOIN LATERAL (
          SELECT t.msg_id FROM pgmq.%1$I t
           WHERE coalesce(t.headers->>'x-pgmq-group', '_default_fifo_group') = o.grp
             AND t.msg_id >= o.head AND t.vt <= clock_timestamp()
           ORDER BY t.msg_id LIMIT $1) m),
    chosen AS (
      SELECT c.msg_id,
             row_number() OVER (ORDER BY CASE WHEN $3 THEN c.rank_in_group ELSE c.group_rank END,
                                         CASE WHEN $3 THEN c.group_rank ELSE c.rank_in_group END) AS pick_order
        FROM candidates c),
    locked AS (
      SELECT q.msg_id, ch.pick_order FROM pgmq.%1$I q JOIN chosen ch ON ch.msg_id = q.msg_id
       WHERE ch.pick_order <= $1
       ORDER BY ch.pick_order
       FOR UPDATE OF q SKIP LOCKED),
    claimed AS (
      UPDATE pgmq.%1$I q
         SET vt = clock_timestamp() + make_interval(secs => $2), read_ct = q.read_ct + 1, last_read_at = clock_timestamp()
        FROM locked l
       WHERE q.msg_id = l.msg_id AND q.vt <= clock_timestamp()
      RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers, l.pick_order)
    -- round robin: in the order picked; otherwise in msg_id order, as PGMQ returns them
    SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers FROM claimed
     ORDER BY CASE WHEN $3 THEN pick_order END, msg_id
    $sql$, pgmq.format_table_name(queue_name, 'q'), lower(queue_name))
  USING qty, vt, round_robin;
END $$;

-- As many messages as possible from the group with the oldest head, then the next group (SQS FIFO).
CREATE OR REPLACE FUNCTION pgmq.read_grouped(queue_name text, vt integer, qty integer) RETURNS SETOF pgmq.message_record
LANGUAGE sql AS $$ SELECT * FROM pgmq._fifo_read(queue_name, vt, qty, false) $$;

-- The first message of every open group, then the second of each, and so on.
CREATE OR REPLACE FUNCTION pgmq.read_grouped_rr(queue_name text, vt integer, qty integer) RETURNS SETOF pgmq.message_record
LANGUAGE sql AS $$ SELECT * FROM pgmq._fifo_read(queue_name, vt, qty, true) $$;

CREATE OR REPLACE FUNCTION pgmq._fifo_read_with_poll(
  queue_name text, vt integer, qty integer, max_poll_seconds integer, poll_interval_ms integer, round_robin boolean
) RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql AS $$
DECLARE
  give_up_at timestamptz := clock_timestamp() + make_interval(secs => max_poll_seconds);
  got bigint;
BEGIN
  WHILE clock_timestamp() < give_up_at LOOP
    RETURN QUERY SELECT * FROM pgmq._fifo_read(queue_name, vt, qty, round_robin);
    GET DIAGNOSTICS got = ROW_COUNT;
    IF got > 0 THEN
      RETURN;
    END IF;
    PERFORM pg_sleep(poll_interval_ms / 1000.0);
  END LOOP;
END $$;

CREATE OR REPLACE FUNCTION pgmq.read_grouped_with_poll(
  queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100
) RETURNS SETOF pgmq.message_record
LANGUAGE sql AS $$ SELECT * FROM pgmq._fifo_read_with_poll(queue_name, vt, qty, max_poll_seconds, poll_interval_ms, false) $$;

CREATE OR REPLACE FUNCTION pgmq.read_grouped_rr_with_poll(
  queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100
) RETURNS SETOF pgmq.message_record
LANGUAGE sql AS $$ SELECT * FROM pgmq._fifo_read_with_poll(queue_name, vt, qty, max_poll_seconds, poll_interval_ms, true) $$;

-- A GIN index on headers, for queues read by group.
CREATE OR REPLACE FUNCTION pgmq.create_fifo_index(queue_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  q text := pgmq.format_table_name(queue_name, 'q');
BEGIN
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I USING gin (headers)', q || '_fifo_idx', q);
END $$;

CREATE OR REPLACE FUNCTION pgmq.create_fifo_indexes_all() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  queue record;
BEGIN
  FOR queue IN SELECT m.queue_name FROM pgmq.meta m ORDER BY 1 LOOP
    PERFORM pgmq.create_fifo_index(queue.queue_name);
  END LOOP;
END $$;

------------------------------------------------------------------ visibility, archive, delete

CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_ids bigint[], vt timestamptz) RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'UPDATE pgmq.%I SET vt = $2 WHERE msg_id = ANY($1)
     RETURNING msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers',
    pgmq.format_table_name(queue_name, 'q'))
  USING msg_ids, vt;
END $$;

CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_ids bigint[], vt integer) RETURNS SETOF pgmq.message_record
LANGUAGE sql AS $$ SELECT * FROM pgmq.set_vt(queue_name, msg_ids, clock_timestamp() + make_interval(secs => vt)) $$;

CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt timestamptz) RETURNS SETOF pgmq.message_record
LANGUAGE sql AS $$ SELECT * FROM pgmq.set_vt(queue_name, ARRAY[msg_id], vt) $$;

CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt integer) RETURNS SETOF pgmq.message_record
LANGUAGE sql AS $$ SELECT * FROM pgmq.set_vt(queue_name, ARRAY[msg_id], clock_timestamp() + make_interval(secs => vt)) $$;

CREATE OR REPLACE FUNCTION pgmq.archive(queue_name text, msg_ids bigint[]) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'WITH moved AS (DELETE FROM pgmq.%I WHERE msg_id = ANY($1) RETURNING *)
     INSERT INTO pgmq.%I (msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers)
     SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers FROM moved
     RETURNING msg_id', pgmq.format_table_name(queue_name, 'q'), pgmq.format_table_name(queue_name, 'a'))
  USING msg_ids;
END $$;

CREATE OR REPLACE FUNCTION pgmq.delete(queue_name text, msg_ids bigint[]) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format('DELETE FROM pgmq.%I WHERE msg_id = ANY($1) RETURNING msg_id', pgmq.format_table_name(queue_name, 'q'))
  USING msg_ids;
END $$;

------------------------------------------------------------------ metrics

CREATE OR REPLACE FUNCTION pgmq.metrics(queue_name text) RETURNS pgmq.metrics_result
LANGUAGE plpgsql AS $$
DECLARE
  q text := pgmq.format_table_name(queue_name, 'q');
  result pgmq.metrics_result;
BEGIN
  EXECUTE format(
    'SELECT $1::text, count(*), extract(epoch FROM now() - max(enqueued_at))::integer,
            extract(epoch FROM now() - min(enqueued_at))::integer,
            (SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END FROM pgmq.%I s),
            now(), count(*) FILTER (WHERE vt <= now())
       FROM pgmq.%I', q || '_msg_id_seq', q)
  INTO result USING queue_name;
  RETURN result;
END $$;

------------------------------------------------------------------ insert notifications
-- enable_notify_insert(queue, throttle_ms) adds a trigger that sends NOTIFY on the channel
-- `pgmq.q_<queue>.INSERT` at commit, at most once per throttle interval (0: every insert).
-- pgbus's own wake-up trigger (pgbus_notify_insert, channel pgbus_queue) is separate and
-- keeps working alongside it.

CREATE OR REPLACE FUNCTION pgmq.notify_queue_listeners() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  due integer;
BEGIN
  -- The UPDATE is the throttle: only one insert per interval gets the row, and the row
  -- lock makes concurrent writers wait instead of notifying twice.
  UPDATE pgmq.notify_insert_throttle t SET last_notified_at = clock_timestamp()
   WHERE t.queue_name = substring(TG_TABLE_NAME FROM 3)
     AND (t.throttle_interval_ms = 0
          OR clock_timestamp() - t.last_notified_at >= make_interval(secs => t.throttle_interval_ms / 1000.0));
  GET DIAGNOSTICS due = ROW_COUNT;
  IF due > 0 THEN
    PERFORM pg_notify('pgmq.' || TG_TABLE_NAME || '.' || TG_OP, NULL);
  END IF;
  RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION pgmq.disable_notify_insert(queue_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('DROP TRIGGER IF EXISTS trigger_notify_queue_insert_listeners ON pgmq.%I', pgmq.format_table_name(queue_name, 'q'));
  DELETE FROM pgmq.notify_insert_throttle t WHERE t.queue_name = disable_notify_insert.queue_name;
END $$;

CREATE OR REPLACE FUNCTION pgmq.enable_notify_insert(queue_name text, throttle_interval_ms integer DEFAULT 250) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  q text := pgmq.format_table_name(queue_name, 'q');
BEGIN
  IF throttle_interval_ms < 0 THEN
    RAISE EXCEPTION 'throttle_interval_ms must be non-negative';
  END IF;
  IF to_regclass(format('pgmq.%I', q)) IS NULL THEN
    RAISE EXCEPTION 'Queue "%" does not exist. Create it first using pgmq.create()', queue_name;
  END IF;
  PERFORM pgmq.disable_notify_insert(queue_name);
  INSERT INTO pgmq.notify_insert_throttle (queue_name, throttle_interval_ms)
  VALUES (enable_notify_insert.queue_name, coalesce(enable_notify_insert.throttle_interval_ms, 0))
  ON CONFLICT ON CONSTRAINT notify_insert_throttle_queue_name_key
  DO UPDATE SET throttle_interval_ms = EXCLUDED.throttle_interval_ms, last_notified_at = to_timestamp(0);
  EXECUTE format(
    'CREATE CONSTRAINT TRIGGER trigger_notify_queue_insert_listeners AFTER INSERT ON pgmq.%I
       DEFERRABLE FOR EACH ROW EXECUTE FUNCTION pgmq.notify_queue_listeners()', q);
END $$;

CREATE OR REPLACE FUNCTION pgmq.update_notify_insert(queue_name text, throttle_interval_ms integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF throttle_interval_ms < 0 THEN
    RAISE EXCEPTION 'throttle_interval_ms must be non-negative, got: %', throttle_interval_ms;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pgmq.meta m WHERE m.queue_name = update_notify_insert.queue_name) THEN
    RAISE EXCEPTION 'Queue "%" does not exist. Create the queue first using pgmq.create()', queue_name;
  END IF;
  UPDATE pgmq.notify_insert_throttle t
     SET throttle_interval_ms = update_notify_insert.throttle_interval_ms, last_notified_at = to_timestamp(0)
   WHERE t.queue_name = update_notify_insert.queue_name;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Queue "%" does not have notify_insert enabled. Enable it first using pgmq.enable_notify_insert()', queue_name;
  END IF;
END $$;

CREATE OR REPLACE FUNCTION pgmq.list_notify_insert_throttles()
RETURNS TABLE (queue_name text, throttle_interval_ms integer, last_notified_at timestamptz)
LANGUAGE sql STABLE AS $$
  SELECT t.queue_name, t.throttle_interval_ms, t.last_notified_at FROM pgmq.notify_insert_throttle t ORDER BY t.queue_name;
$$;

------------------------------------------------------------------ topics

CREATE OR REPLACE FUNCTION pgmq.validate_routing_key(routing_key text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF coalesce(routing_key, '') = '' THEN
    RAISE EXCEPTION 'routing_key cannot be NULL or empty';
  ELSIF length(routing_key) > 255 THEN
    RAISE EXCEPTION 'routing_key length cannot exceed 255 characters, got % characters', length(routing_key);
  ELSIF routing_key ~ '[^a-zA-Z0-9._-]' THEN
    RAISE EXCEPTION 'routing_key contains invalid characters. Only alphanumeric, dots, hyphens, and underscores are allowed. Got: %', routing_key;
  ELSIF left(routing_key, 1) = '.' THEN
    RAISE EXCEPTION 'routing_key cannot start with a dot. Got: %', routing_key;
  ELSIF right(routing_key, 1) = '.' THEN
    RAISE EXCEPTION 'routing_key cannot end with a dot. Got: %', routing_key;
  ELSIF position('..' IN routing_key) > 0 THEN
    RAISE EXCEPTION 'routing_key cannot contain consecutive dots. Got: %', routing_key;
  END IF;
  RETURN true;
END $$;

CREATE OR REPLACE FUNCTION pgmq.validate_topic_pattern(pattern text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF coalesce(pattern, '') = '' THEN
    RAISE EXCEPTION 'pattern cannot be NULL or empty';
  ELSIF length(pattern) > 255 THEN
    RAISE EXCEPTION 'pattern length cannot exceed 255 characters, got % characters', length(pattern);
  ELSIF pattern ~ '[^a-zA-Z0-9._*#-]' THEN
    RAISE EXCEPTION 'pattern contains invalid characters. Only alphanumeric, dots, hyphens, underscores, *, and # are allowed. Got: %', pattern;
  ELSIF left(pattern, 1) = '.' THEN
    RAISE EXCEPTION 'pattern cannot start with a dot. Got: %', pattern;
  ELSIF right(pattern, 1) = '.' THEN
    RAISE EXCEPTION 'pattern cannot end with a dot. Got: %', pattern;
  ELSIF position('..' IN pattern) > 0 THEN
    RAISE EXCEPTION 'pattern cannot contain consecutive dots. Got: %', pattern;
  ELSIF position('**' IN pattern) > 0 THEN
    RAISE EXCEPTION 'pattern cannot contain consecutive stars (**). Use # for multi-segment matching. Got: %', pattern;
  ELSIF position('##' IN pattern) > 0 THEN
    RAISE EXCEPTION 'pattern cannot contain consecutive hashes (##). A single # already matches zero or more segments. Got: %', pattern;
  ELSIF position('*#' IN pattern) > 0 OR position('#*' IN pattern) > 0 THEN
    RAISE EXCEPTION 'pattern cannot contain adjacent wildcards (*# or #*). Separate wildcards with dots. Got: %', pattern;
  END IF;
  RETURN true;
END $$;

DROP FUNCTION pgmq.bind_topic(text, text);
CREATE FUNCTION pgmq.bind_topic(pattern text, queue_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgmq.validate_topic_pattern(pattern);
  IF coalesce(queue_name, '') = '' THEN
    RAISE EXCEPTION 'queue_name cannot be NULL or empty';
  END IF;
  -- Checked here, at bind time: a binding to a missing queue would fail every matching send_topic.
  IF NOT EXISTS (SELECT 1 FROM pgmq.meta m WHERE m.queue_name = bind_topic.queue_name) THEN
    RAISE EXCEPTION 'Queue "%" does not exist. Create the queue first using pgmq.create()', queue_name;
  END IF;
  INSERT INTO pgmq.topic_bindings (pattern, queue_name) VALUES (pattern, queue_name)
  ON CONFLICT ON CONSTRAINT topic_bindings_unique_pattern_queue DO NOTHING;
END $$;

DROP FUNCTION pgmq.unbind_topic(text, text);
CREATE FUNCTION pgmq.unbind_topic(pattern text, queue_name text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  IF coalesce(pattern, '') = '' THEN
    RAISE EXCEPTION 'pattern cannot be NULL or empty';
  END IF;
  IF coalesce(queue_name, '') = '' THEN
    RAISE EXCEPTION 'queue_name cannot be NULL or empty';
  END IF;
  DELETE FROM pgmq.topic_bindings b WHERE b.pattern = unbind_topic.pattern AND b.queue_name = unbind_topic.queue_name;
  RETURN FOUND;
END $$;

-- The bindings a routing key would reach, without sending anything.
CREATE OR REPLACE FUNCTION pgmq.test_routing(routing_key text)
RETURNS TABLE (pattern text, queue_name text, compiled_regex text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
  PERFORM pgmq.validate_routing_key(routing_key);
  RETURN QUERY SELECT b.pattern, b.queue_name, b.compiled_regex FROM pgmq.topic_bindings b
                WHERE test_routing.routing_key ~ b.compiled_regex ORDER BY b.pattern;
END $$;

CREATE OR REPLACE FUNCTION pgmq.list_topic_bindings()
RETURNS TABLE (pattern text, queue_name text, bound_at timestamptz, compiled_regex text)
LANGUAGE sql STABLE AS $$
  SELECT b.pattern, b.queue_name, b.bound_at, b.compiled_regex FROM pgmq.topic_bindings b
   ORDER BY b.bound_at DESC, b.pattern, b.queue_name;
$$;

CREATE OR REPLACE FUNCTION pgmq.list_topic_bindings(queue_name text)
RETURNS TABLE (pattern text, queue_name text, bound_at timestamptz, compiled_regex text)
LANGUAGE sql STABLE AS $$
  SELECT b.pattern, b.queue_name, b.bound_at, b.compiled_regex FROM pgmq.topic_bindings b
   WHERE b.queue_name = list_topic_bindings.queue_name
   ORDER BY b.bound_at DESC, b.pattern;
$$;

-- The queues a routing key reaches, each once, in name order; each is locked (shared) the
-- way create/drop_queue lock it exclusively, so a send never meets a half-dropped queue.
CREATE OR REPLACE FUNCTION pgmq._topic_targets(routing_key text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
  target text;
BEGIN
  FOR target IN SELECT DISTINCT b.queue_name FROM pgmq.topic_bindings b WHERE routing_key ~ b.compiled_regex ORDER BY 1 LOOP
    PERFORM pg_advisory_xact_lock_shared(hashtext('pgmq.create'), hashtext(lower(target)));
    -- Looked at again under the lock: a queue dropped meanwhile took its bindings with it
    -- and is skipped, instead of failing the whole send.
    CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pgmq.topic_bindings b WHERE b.queue_name = target);
    RETURN NEXT target;
  END LOOP;
END $$;

DROP FUNCTION pgmq.send_topic(text, jsonb, jsonb, integer);
CREATE FUNCTION pgmq.send_topic(routing_key text, msg jsonb, headers jsonb, delay integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  target text;
  sent integer := 0;
BEGIN
  PERFORM pgmq.validate_routing_key(routing_key);
  IF msg IS NULL THEN
    RAISE EXCEPTION 'msg cannot be NULL';
  END IF;
  IF delay < 0 THEN
    RAISE EXCEPTION 'delay cannot be negative, got: %', delay;
  END IF;
  FOR target IN SELECT * FROM pgmq._topic_targets(routing_key) LOOP
    PERFORM pgmq._send(target, ARRAY[msg], ARRAY[headers], clock_timestamp() + make_interval(secs => delay));
    sent := sent + 1;
  END LOOP;
  RETURN sent;
END $$;

CREATE FUNCTION pgmq.send_topic(routing_key text, msg jsonb) RETURNS integer
LANGUAGE sql AS $$ SELECT pgmq.send_topic(routing_key, msg, NULL, 0) $$;

CREATE FUNCTION pgmq.send_topic(routing_key text, msg jsonb, delay integer) RETURNS integer
LANGUAGE sql AS $$ SELECT pgmq.send_topic(routing_key, msg, NULL, delay) $$;

-- One copy of the batch into every queue the routing key reaches: (queue, msg_id) rows,
-- queue by queue in name order, ids in batch order.
CREATE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], headers jsonb[], delay timestamptz)
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
  target text;
BEGIN
  PERFORM pgmq.validate_routing_key(routing_key);
  PERFORM pgmq._check_batch(msgs, headers);
  FOR target IN SELECT * FROM pgmq._topic_targets(routing_key) LOOP
    RETURN QUERY SELECT target, sent.id FROM pgmq._send(target, msgs, headers, delay) AS sent(id);
  END LOOP;
END $$;

CREATE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[])
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE sql AS $$ SELECT * FROM pgmq.send_batch_topic(routing_key, msgs, NULL::jsonb[], clock_timestamp()) $$;

CREATE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], headers jsonb[])
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE sql AS $$ SELECT * FROM pgmq.send_batch_topic(routing_key, msgs, headers, clock_timestamp()) $$;

CREATE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], delay integer)
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE sql AS $$ SELECT * FROM pgmq.send_batch_topic(routing_key, msgs, NULL::jsonb[], clock_timestamp() + make_interval(secs => delay)) $$;

CREATE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], delay timestamptz)
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE sql AS $$ SELECT * FROM pgmq.send_batch_topic(routing_key, msgs, NULL::jsonb[], delay) $$;

CREATE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], headers jsonb[], delay integer)
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE sql AS $$ SELECT * FROM pgmq.send_batch_topic(routing_key, msgs, headers, clock_timestamp() + make_interval(secs => delay)) $$;

-- 0001's name check (pgmq._checked_name) is no longer used by the functions above; it stays
-- for any function of another migration that still calls it.
