-- Flow limits across processes: concurrency slots by key (with parked waiters) and rate
-- windows. A worker admits each claimed message of a limited job through pgbus.admit()
-- before running it; pgbus.release_slots() ends a run's slot and hands it to the oldest
-- waiter of its key; pgbus.sweep_limits() (the maintenance role) cleans what crashes leave.
--
-- Every function takes the transaction-level advisory lock of each key it touches, in
-- hashtext order (so two of them never deadlock), before reading that key's rows, and
-- each statement inside a plpgsql function takes a fresh snapshot: a count read after the
-- lock sees every slot and waiter committed before it. Keys are namespaced: 'c:' for
-- concurrency, 'r:' for rate.

-- One row per running (or claimed and about to run) message of a concurrency-limited job.
-- A slot is live only while its message still carries the claim that took it: the row in
-- pgmq.q_<queue> exists with the same read_ct and its VT has not run out; and, when it
-- names its holder (the pgbus.processes id of the worker's process, under `pgbus start`),
-- while that row exists. So a slot whose holder died (SIGKILL) stops counting as soon as
-- the supervisor deletes the dead child's row (or the maintenance reaps it), at the latest
-- when its VT runs out; and a settled message's slot stops counting even if its release
-- never arrived: no slot leaks. A slot younger than 10 seconds counts whatever the
-- processes table says: a worker may claim before its first heartbeat row is written.
CREATE TABLE pgbus.concurrency_slots (
  queue_name text NOT NULL,
  msg_id bigint NOT NULL,
  read_ct integer NOT NULL,
  sem_key text NOT NULL,
  slot_limit integer NOT NULL,
  holder uuid,
  acquired_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (queue_name, msg_id)
);
CREATE INDEX concurrency_slots_key_idx ON pgbus.concurrency_slots (sem_key);

-- Messages parked because their key was at its limit: their VT is pushed far out (a
-- last-resort backstop, see park_sec) and their claim undone (read_ct - 1: waiting is not
-- an attempt). read_ct is the one they were parked with, which fences the unpark.
CREATE TABLE pgbus.blocked (
  queue_name text NOT NULL,
  msg_id bigint NOT NULL,
  read_ct integer NOT NULL,
  sem_key text NOT NULL,
  slot_limit integer NOT NULL,
  blocked_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (queue_name, msg_id)
);
CREATE INDEX blocked_key_idx ON pgbus.blocked (sem_key, msg_id);

-- Starts per rate key in sub-windows ("buckets") of a twentieth of the interval. A start
-- is admitted when the last 22 sub-windows (the current one and 21 before it: at least
-- one interval plus one sub-window) hold fewer than the limit. A sliding window, not a
-- fixed one (a fixed window lets 2 x limit through across its edge): no interval-long
-- window holds more than `limit` admissions, and the spare sub-window is a guard band for
-- the few ms between a message's admission and its handler's start, so measured starts
-- hold the limit too. A limit that binds all the time admits about limit / 1.075 per
-- interval (600 starts at 50/s: about 12.9 s instead of 12).
CREATE TABLE pgbus.rate_windows (
  rate_key text NOT NULL,
  bucket bigint NOT NULL,
  starts integer NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (rate_key, bucket)
);
CREATE INDEX rate_windows_expires_idx ON pgbus.rate_windows (expires_at);

CREATE FUNCTION pgbus.lock_limit_keys(keys text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('pgbus.limits'), h)
     FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest(keys) AS k WHERE k IS NOT NULL ORDER BY 1) AS ordered;
END $$;

-- Drops the dead slots of one key (see pgbus.concurrency_slots) and returns how many live
-- ones it has. Called under the key's lock, only when the plain count reaches the limit.
CREATE FUNCTION pgbus.live_slots(key text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  q text;
  live integer;
BEGIN
  FOR q IN SELECT DISTINCT queue_name FROM pgbus.concurrency_slots WHERE sem_key = key LOOP
    BEGIN
      EXECUTE format(
        'DELETE FROM pgbus.concurrency_slots s WHERE s.sem_key = $1 AND s.queue_name = $2
            AND (NOT EXISTS (SELECT 1 FROM pgmq.%I m WHERE m.msg_id = s.msg_id AND m.read_ct = s.read_ct AND m.vt > clock_timestamp())
                 OR (s.holder IS NOT NULL AND s.acquired_at < clock_timestamp() - interval ''10 seconds''
                     AND NOT EXISTS (SELECT 1 FROM pgbus.processes p WHERE p.id = s.holder)))',
        'q_' || pgbus.checked_queue_name(q)) USING key, q;
    EXCEPTION WHEN undefined_table THEN
      DELETE FROM pgbus.concurrency_slots WHERE sem_key = key AND queue_name = q; -- the queue was dropped
    END;
  END LOOP;
  SELECT count(*) INTO live FROM pgbus.concurrency_slots WHERE sem_key = key;
  RETURN live;
END $$;

-- Makes up to `wanted` of the oldest waiters of `key` visible again, fenced by the read_ct
-- each was parked with (a waiter that is gone or was claimed since is skipped). Returns
-- the queues it woke.
CREATE FUNCTION pgbus.unpark(key text, wanted integer) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
  waiter pgbus.blocked%ROWTYPE;
  woken integer := 0;
  moved integer;
BEGIN
  WHILE woken < wanted LOOP
    DELETE FROM pgbus.blocked b
     WHERE (b.queue_name, b.msg_id) = (SELECT o.queue_name, o.msg_id FROM pgbus.blocked o WHERE o.sem_key = key ORDER BY o.msg_id LIMIT 1)
    RETURNING * INTO waiter;
    EXIT WHEN NOT FOUND;
    BEGIN
      EXECUTE format('UPDATE pgmq.%I SET vt = clock_timestamp() WHERE msg_id = $1 AND read_ct = $2', 'q_' || pgbus.checked_queue_name(waiter.queue_name))
        USING waiter.msg_id, waiter.read_ct;
      GET DIAGNOSTICS moved = ROW_COUNT;
    EXCEPTION WHEN undefined_table THEN
      moved := 0;
    END;
    IF moved > 0 THEN
      woken := woken + 1;
      RETURN NEXT waiter.queue_name;
    END IF;
  END LOOP;
END $$;

-- How long until `key` may start again (0: now), without recording a start.
CREATE FUNCTION pgbus.rate_wait_ms(key text, lim integer, interval_ms float8) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE
  width float8 := interval_ms / 20;
  now_ms float8 := extract(epoch FROM clock_timestamp()) * 1000;
  current_bucket bigint := floor(now_ms / width);
  total bigint;
  oldest bigint;
BEGIN
  SELECT coalesce(sum(starts), 0), min(bucket) INTO total, oldest
    FROM pgbus.rate_windows WHERE rate_key = key AND bucket >= current_bucket - 21;
  IF total < lim THEN
    RETURN 0;
  END IF;
  -- The oldest counted sub-window leaves the window then; if that frees too little, the
  -- caller is told again then (one check per sub-window at most, never a busy loop).
  RETURN greatest(1, (oldest + 22) * width - now_ms);
END $$;

CREATE FUNCTION pgbus.rate_record(key text, interval_ms float8, starts integer) RETURNS void
LANGUAGE sql AS $$
  INSERT INTO pgbus.rate_windows AS w (rate_key, bucket, starts, expires_at)
  VALUES (key, floor(extract(epoch FROM clock_timestamp()) * 1000 / (interval_ms / 20)), starts,
          clock_timestamp() + 2 * interval_ms * interval '1 millisecond')
  ON CONFLICT (rate_key, bucket) DO UPDATE SET starts = w.starts + EXCLUDED.starts;
$$;

-- Starts of `key` in its current window (the same 22 sub-windows as rate_wait_ms).
CREATE FUNCTION pgbus.rate_starts(key text, interval_ms float8) RETURNS bigint
LANGUAGE sql AS $$
  SELECT coalesce(sum(starts), 0) FROM pgbus.rate_windows
   WHERE rate_key = key AND bucket >= floor(extract(epoch FROM clock_timestamp()) * 1000 / (interval_ms / 20)) - 21;
$$;

-- Admits claimed messages of one queue, oldest first. Per message (arrays pairwise, a null
-- key meaning no such limit): its concurrency slot, then the queue's and the job's rate
-- windows. Verdicts:
--   run        start it (holds a slot when it has a concurrency key);
--   parked     its key is at the limit: VT far out, claim undone, row in pgbus.blocked;
--   discarded  at the limit with onLimit "discard": moved to the archive with a
--              pgbus_discarded header (reason, key, limit, at);
--   throttled  a rate window is full: visible again in wait_ms, claim undone; limited_by
--              says which window ('queue' or 'job').
-- Every change to a message is fenced by the read_ct it was claimed with. It first frees
-- the slots of (released_ids, released_read_cts), as release_slots does. When no limit
-- binds (every key has room for all its messages: the common case), the messages are
-- admitted as a set, a handful of statements for the whole claim; otherwise one by one, in
-- order (measured on 25 messages: about 15 ms one by one, 2 as a set).
CREATE FUNCTION pgbus.admit(
  queue_name text, ids bigint[], read_cts integer[],
  ckeys text[], climits integer[], discards boolean[],
  rkeys text[], rlimits integer[], rintervals float8[],
  qkey text, qlimit integer, qinterval float8,
  park_sec float8, released_ids bigint[], released_read_cts integer[], holder uuid)
RETURNS TABLE (msg_id bigint, verdict text, wait_ms float8, limited_by text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  qn text := pgbus.checked_queue_name(queue_name);
  room boolean;
  i integer;
  live integer;
  queue_wait float8;
  job_wait float8;
BEGIN
  -- One lock pass for every key it touches, the releases' included: two passes could deadlock.
  PERFORM pgbus.lock_limit_keys(
    (SELECT array_agg('c:' || k) FROM unnest(ckeys) AS k) || (SELECT array_agg('r:' || k) FROM unnest(rkeys) AS k) || ARRAY['r:' || qkey]
    || pgbus.slot_keys(qn, released_ids, released_read_cts));
  PERFORM pgbus.free_slots(qn, released_ids, released_read_cts);
  SELECT coalesce(bool_and(fits), true) INTO room FROM (
    SELECT (SELECT count(*) FROM pgbus.concurrency_slots s WHERE s.sem_key = c.k) + c.n <= c.lim AS fits
      FROM (SELECT k, count(*) AS n, min(lim) AS lim FROM unnest(ckeys, climits) AS x(k, lim) WHERE k IS NOT NULL GROUP BY k) c
    UNION ALL
    SELECT pgbus.rate_starts(r.k, r.iv) + r.n <= r.lim
      FROM (SELECT k, count(*) AS n, min(lim) AS lim, max(iv) AS iv FROM unnest(rkeys, rlimits, rintervals) AS x(k, lim, iv) WHERE k IS NOT NULL GROUP BY k) r
    UNION ALL
    SELECT pgbus.rate_starts(qkey, qinterval) + cardinality(ids) <= qlimit WHERE qkey IS NOT NULL) checks;
  IF room THEN
    INSERT INTO pgbus.concurrency_slots AS s (queue_name, msg_id, read_ct, sem_key, slot_limit, holder)
    SELECT qn, x.id, x.rc, x.k, x.lim, admit.holder FROM unnest(ids, read_cts, ckeys, climits) AS x(id, rc, k, lim) WHERE x.k IS NOT NULL
    ON CONFLICT (queue_name, msg_id) DO UPDATE SET read_ct = EXCLUDED.read_ct, holder = EXCLUDED.holder, acquired_at = clock_timestamp();
    IF FOUND THEN
      DELETE FROM pgbus.blocked b USING unnest(ids) AS x(id) WHERE b.queue_name = qn AND b.msg_id = x.id; -- waited, now runs
    END IF;
    PERFORM pgbus.rate_record(r.k, r.iv, r.n::int)
       FROM (SELECT k, count(*) AS n, max(iv) AS iv FROM unnest(rkeys, rintervals) AS x(k, iv) WHERE k IS NOT NULL GROUP BY k) r;
    IF qkey IS NOT NULL THEN
      PERFORM pgbus.rate_record(qkey, qinterval, cardinality(ids));
    END IF;
    RETURN QUERY SELECT x.id, 'run'::text, NULL::float8, NULL::text FROM unnest(ids) AS x(id);
    RETURN;
  END IF;
  FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
    msg_id := ids[i];
    verdict := 'run';
    wait_ms := NULL;
    limited_by := NULL;
    IF ckeys[i] IS NOT NULL THEN
      -- The same message again (its run goes on under a new claim, or its holder died and
      -- it came back): the slot moves to the new claim.
      UPDATE pgbus.concurrency_slots s SET read_ct = read_cts[i], holder = admit.holder, acquired_at = clock_timestamp()
       WHERE s.queue_name = qn AND s.msg_id = ids[i];
      IF NOT FOUND THEN
        SELECT count(*) INTO live FROM pgbus.concurrency_slots s WHERE s.sem_key = ckeys[i];
        IF live >= climits[i] THEN
          live := pgbus.live_slots(ckeys[i]);
        END IF;
        IF live < climits[i] THEN
          INSERT INTO pgbus.concurrency_slots (queue_name, msg_id, read_ct, sem_key, slot_limit, holder)
          VALUES (qn, ids[i], read_cts[i], ckeys[i], climits[i], admit.holder);
        ELSIF discards[i] THEN
          EXECUTE format(
            'WITH moved AS (DELETE FROM pgmq.%I WHERE msg_id = $1 AND read_ct = $2
                            RETURNING msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers)
             INSERT INTO pgmq.%I (msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers)
             SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message,
                    coalesce(headers, ''{}''::jsonb) || jsonb_build_object(''pgbus_discarded'',
                      jsonb_build_object(''reason'', ''concurrency_limit'', ''key'', $3::text, ''limit'', $4::int, ''at'', clock_timestamp()))
               FROM moved', 'q_' || qn, 'a_' || qn) USING ids[i], read_cts[i], ckeys[i], climits[i];
          verdict := 'discarded';
        ELSE
          EXECUTE format('UPDATE pgmq.%I SET vt = clock_timestamp() + $3 * interval ''1 second'', read_ct = read_ct - 1
                           WHERE msg_id = $1 AND read_ct = $2', 'q_' || qn) USING ids[i], read_cts[i], park_sec;
          INSERT INTO pgbus.blocked AS b (queue_name, msg_id, read_ct, sem_key, slot_limit)
          VALUES (qn, ids[i], read_cts[i] - 1, ckeys[i], climits[i])
          ON CONFLICT (queue_name, msg_id) DO UPDATE SET read_ct = EXCLUDED.read_ct, slot_limit = EXCLUDED.slot_limit;
          verdict := 'parked';
        END IF;
      END IF;
    END IF;
    IF verdict = 'run' AND (qkey IS NOT NULL OR rkeys[i] IS NOT NULL) THEN
      queue_wait := CASE WHEN qkey IS NULL THEN 0 ELSE pgbus.rate_wait_ms(qkey, qlimit, qinterval) END;
      job_wait := CASE WHEN rkeys[i] IS NULL THEN 0 ELSE pgbus.rate_wait_ms(rkeys[i], rlimits[i], rintervals[i]) END;
      IF queue_wait > 0 OR job_wait > 0 THEN
        DELETE FROM pgbus.concurrency_slots s WHERE s.queue_name = qn AND s.msg_id = ids[i];
        wait_ms := greatest(queue_wait, job_wait);
        limited_by := CASE WHEN queue_wait >= job_wait THEN 'queue' ELSE 'job' END;
        EXECUTE format('UPDATE pgmq.%I SET vt = clock_timestamp() + $3 * interval ''1 millisecond'', read_ct = read_ct - 1
                         WHERE msg_id = $1 AND read_ct = $2', 'q_' || qn) USING ids[i], read_cts[i], wait_ms;
        verdict := 'throttled';
      ELSE
        IF qkey IS NOT NULL THEN PERFORM pgbus.rate_record(qkey, qinterval, 1); END IF;
        IF rkeys[i] IS NOT NULL THEN PERFORM pgbus.rate_record(rkeys[i], rintervals[i], 1); END IF;
      END IF;
    END IF;
    IF verdict = 'run' AND ckeys[i] IS NOT NULL THEN
      DELETE FROM pgbus.blocked b WHERE b.queue_name = qn AND b.msg_id = ids[i]; -- it waited and now runs
    END IF;
    RETURN NEXT;
  END LOOP;
END $$;

-- The keys of the slots that a release of (ids, read_cts) would free, for lock_limit_keys.
CREATE FUNCTION pgbus.slot_keys(queue_name text, ids bigint[], read_cts integer[]) RETURNS text[]
LANGUAGE sql STABLE AS $$
  SELECT ARRAY(SELECT 'c:' || s.sem_key FROM pgbus.concurrency_slots s JOIN unnest(ids, read_cts) AS c(id, rc)
                   ON s.queue_name = slot_keys.queue_name AND s.msg_id = c.id AND s.read_ct = c.rc);
$$;

-- Ends the slots of finished runs (fenced by the read_ct of the claim that took each) and
-- hands each freed slot to the oldest waiter of its key, in the same transaction; the
-- woken queues are notified so their workers claim at once. Returns how many it woke.
-- The caller holds the locks of the keys (slot_keys): release_slots, or admit, which
-- carries the releases of the worker's finished runs when it has some (one statement
-- instead of two per claim).
CREATE FUNCTION pgbus.free_slots(queue_name text, ids bigint[], read_cts integer[]) RETURNS integer
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  freed record;
  woken record;
  total integer := 0;
BEGIN
  FOR freed IN
    WITH gone AS (
      DELETE FROM pgbus.concurrency_slots s USING unnest(ids, read_cts) AS c(id, rc)
       WHERE s.queue_name = free_slots.queue_name AND s.msg_id = c.id AND s.read_ct = c.rc
      RETURNING s.sem_key)
    SELECT g.sem_key, count(*)::int AS n FROM gone g
     WHERE EXISTS (SELECT 1 FROM pgbus.blocked b WHERE b.sem_key = g.sem_key) -- a key nobody waits for hands nothing on
     GROUP BY g.sem_key
  LOOP
    FOR woken IN SELECT u AS queue, count(*)::int AS n FROM pgbus.unpark(freed.sem_key, freed.n) AS u GROUP BY u LOOP
      PERFORM pg_notify('pgbus_queue', woken.queue);
      total := total + woken.n;
    END LOOP;
  END LOOP;
  RETURN total;
END $$;

CREATE FUNCTION pgbus.release_slots(queue_name text, ids bigint[], read_cts integer[]) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgbus.lock_limit_keys(pgbus.slot_keys(queue_name, ids, read_cts));
  RETURN pgbus.free_slots(queue_name, ids, read_cts);
END $$;

-- The maintenance role's pass: drops dead slots (their holder died or their release was
-- lost), wakes as many waiters of each key as it has free slots (a hand-off lost to a
-- crash, or a waiter whose holder died), and drops expired rate sub-windows. Returns the
-- number of waiters woken.
CREATE FUNCTION pgbus.sweep_limits() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  key text;
  lim integer;
  live integer;
  woken record;
  total integer := 0;
BEGIN
  -- Every key at once, in lock order: taken one by one, a later key could sort before an
  -- earlier one and deadlock against an admit that holds both.
  PERFORM pgbus.lock_limit_keys(ARRAY(
    SELECT 'c:' || sem_key FROM pgbus.concurrency_slots UNION SELECT 'c:' || sem_key FROM pgbus.blocked));
  FOR key IN SELECT DISTINCT sem_key FROM pgbus.concurrency_slots LOOP
    PERFORM pgbus.live_slots(key);
  END LOOP;
  FOR key, lim IN SELECT sem_key, max(slot_limit) FROM pgbus.blocked GROUP BY sem_key LOOP
    live := pgbus.live_slots(key);
    FOR woken IN SELECT u AS queue, count(*)::int AS n FROM pgbus.unpark(key, lim - live) AS u GROUP BY u LOOP
      PERFORM pg_notify('pgbus_queue', woken.queue);
      total := total + woken.n;
    END LOOP;
  END LOOP;
  DELETE FROM pgbus.rate_windows WHERE expires_at < clock_timestamp();
  RETURN total;
END $$;
