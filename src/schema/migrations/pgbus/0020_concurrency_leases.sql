-- Flow limits whose cost does not grow with the number of runs. Migration 0012 wrote a
-- row of pgbus.concurrency_slots for every run of a concurrency-limited job, deleted it
-- when the run ended, and recorded every start of a rate-limited job: two statements and
-- several row writes per claim even when no limit binds (a no-op drain with a limit that
-- never binds ran at a sixth of the plain rate). Now a worker holds a counted lease per
-- key (how many runs of that key it may start: one row per worker and key, updated in
-- place) and reserves rate starts ahead, and admits its claims against them in memory; it
-- asks the database only when a key needs more than it holds, and gives back only what
-- others wait for or what it stops using. So a limit that does not bind costs a statement
-- now and then, and one that binds works as before: at its limit a message is parked in
-- pgbus.blocked and the unit a run frees goes, in the same transaction, to the oldest
-- waiter of its key.
--
-- The functions below take the advisory locks of every key they touch first, in hashtext
-- order (pgbus.lock_limit_keys of migration 0012), so a count read after the lock sees
-- every lease and waiter committed before it, and two of them never deadlock.
--
-- The per-run functions of 0012 are dropped: a worker of an older version fails its
-- admissions (reported; its limited messages come back after their VT) instead of
-- counting runs the new workers cannot see. pgbus.blocked, the rate windows and their
-- helper functions stay.

DROP FUNCTION pgbus.admit(text, bigint[], integer[], text[], integer[], boolean[], text[], integer[], float8[],
                          text, integer, float8, float8, bigint[], integer[], uuid);
DROP FUNCTION pgbus.release_slots(text, bigint[], integer[]);
DROP FUNCTION pgbus.free_slots(text, bigint[], integer[]);
DROP FUNCTION pgbus.slot_keys(text, bigint[], integer[]);
DROP FUNCTION pgbus.live_slots(text);
DROP TABLE pgbus.concurrency_slots;

-- Units of a concurrency key held by one worker (holder: the worker's own id). The units
-- of a key's live leases never add up to more than its limit; a worker starts a run of
-- the key only with a unit of its lease. A lease is live until expires_at (the worker
-- renews it while it lives, see pgbus.renew_leases) and, when it names the worker's
-- process (process_id: its pgbus.processes row, under `pgbus start`), while that row
-- exists: so the units of a worker that died (SIGKILL, OOM) stop counting as soon as its
-- supervisor deletes the row, at the latest after the lease's time to live (the worker's
-- VT). A lease younger than 10 seconds counts whatever the processes table says: a worker
-- may claim before its first heartbeat row is written.
CREATE TABLE pgbus.concurrency_leases (
  sem_key text NOT NULL,
  holder uuid NOT NULL,
  process_id uuid,
  held integer NOT NULL CHECK (held > 0),
  slot_limit integer NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (sem_key, holder)
);
CREATE INDEX concurrency_leases_holder_idx ON pgbus.concurrency_leases (holder);

-- Drops the dead leases of one key and returns the units its live ones hold. Called under
-- the key's lock.
CREATE FUNCTION pgbus.live_held(key text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  total integer;
BEGIN
  DELETE FROM pgbus.concurrency_leases l
   WHERE l.sem_key = key
     AND (l.expires_at <= clock_timestamp()
          OR (l.process_id IS NOT NULL AND l.created_at < clock_timestamp() - interval '10 seconds'
              AND NOT EXISTS (SELECT 1 FROM pgbus.processes p WHERE p.id = l.process_id)));
  SELECT coalesce(sum(l.held), 0) INTO total FROM pgbus.concurrency_leases l WHERE l.sem_key = key;
  RETURN total;
END $$;

-- Wakes up to `free` of the oldest waiters of `key` (pgbus.unpark of 0012) and notifies
-- their queues. Returns how many it woke.
CREATE FUNCTION pgbus.hand_off(key text, free integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  woken record;
  total integer := 0;
BEGIN
  IF free <= 0 THEN
    RETURN 0;
  END IF;
  FOR woken IN SELECT u AS queue, count(*)::int AS n FROM pgbus.unpark(key, free) AS u GROUP BY u LOOP
    PERFORM pg_notify('pgbus_queue', woken.queue);
    total := total + woken.n;
  END LOOP;
  RETURN total;
END $$;

-- One worker's admission of the claimed messages of one queue, and the setting of its
-- leases, in one transaction.
--
-- Concurrency keys (arrays pairwise): the worker asks to hold `wanted` units of each key
-- (its runs of the key in progress, `in_use`, plus the new messages, plus spare units
-- when no one waits; or fewer, to give units back) and gets as many as the key's limit
-- leaves beside the other workers' live leases: `leased`. Rate keys (a job's, or the
-- queue's own): `reserve` more starts beyond the `local` ones the worker still holds, and
-- up to `headroom` more while the window has plenty of room; `reserved` is what was
-- recorded as started. Then each message, in order (m* arrays: the index of its
-- concurrency key, job rate key and queue rate key in the arrays above, or null), runs if
-- its key has a free unit and its windows a reserved start; otherwise it is
--   parked      its key is at the limit: VT far out (park_sec, a backstop), claim undone
--               (waiting is not an attempt), recorded in pgbus.blocked; the holders of the
--               key are told (NOTIFY 'limit:' || md5(key)) to give back units they do not use;
--   discarded   at the limit with onLimit "discard" (mdiscard): moved to the archive with
--               a pgbus_discarded header (reason, key, limit, at);
--   throttled   a window is full: visible again when it has room (waits, ms), claim
--               undone; limited says which window ('queue' or 'job').
-- Every change to a message is fenced by the read_ct it was claimed with. The units the
-- key's limit has left after the leases are set go to its oldest waiters (a worker that
-- gave units back hands them on here). `waiting` says, per concurrency key, whether
-- messages still wait for it. Called with no messages, it only sets leases.
CREATE FUNCTION pgbus.admit_leased(
  queue_name text, holder uuid, process_id uuid, ttl_sec float8, park_sec float8,
  ckeys text[], climits integer[], cin_use integer[], cwanted integer[],
  rkeys text[], rlimits integer[], rintervals float8[], rlocal integer[], rreserve integer[], rheadroom integer[],
  ids bigint[], read_cts integer[], mckey integer[], mrkey integer[], mqkey integer[], mdiscard boolean[],
  OUT leased integer[], OUT waiting boolean[], OUT reserved integer[], OUT verdicts text[], OUT waits float8[], OUT limited text[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  qn text;
  nc integer := coalesce(cardinality(ckeys), 0);
  nr integer := coalesce(cardinality(rkeys), 0);
  nm integer := coalesce(cardinality(ids), 0);
  others integer[] := array_fill(0, ARRAY[nc]);
  free integer[] := array_fill(0, ARRAY[nc]);
  tokens integer[] := array_fill(0, ARRAY[nr]);
  rate_wait float8[] := array_fill(NULL::float8, ARRAY[nr]);
  room bigint;
  c integer;
  r integer;
  q integer;
  i integer;
BEGIN
  IF nm > 0 THEN
    qn := pgbus.checked_queue_name(queue_name);
  END IF;
  PERFORM pgbus.lock_limit_keys(ARRAY(SELECT 'c:' || k FROM unnest(ckeys) AS k) || ARRAY(SELECT 'r:' || k FROM unnest(rkeys) AS k));
  leased := array_fill(0, ARRAY[nc]);
  waiting := array_fill(false, ARRAY[nc]);
  reserved := array_fill(0, ARRAY[nr]);
  verdicts := array_fill(NULL::text, ARRAY[nm]);
  waits := array_fill(NULL::float8, ARRAY[nm]);
  limited := array_fill(NULL::text, ARRAY[nm]);

  FOR c IN 1 .. nc LOOP
    others[c] := pgbus.live_held(ckeys[c]) - coalesce(
      (SELECT l.held FROM pgbus.concurrency_leases l WHERE l.sem_key = ckeys[c] AND l.holder = admit_leased.holder), 0);
    leased[c] := greatest(0, least(cwanted[c], climits[c] - others[c]));
    free[c] := leased[c] - cin_use[c];
  END LOOP;
  FOR r IN 1 .. nr LOOP
    room := rlimits[r] - pgbus.rate_starts(rkeys[r], rintervals[r]);
    tokens[r] := rlocal[r] + greatest(0, least(room, rreserve[r] + least(rheadroom[r], greatest(room - rreserve[r], 0) / 16)));
    reserved[r] := tokens[r] - rlocal[r];
  END LOOP;

  FOR i IN 1 .. nm LOOP
    c := mckey[i];
    r := mrkey[i];
    q := mqkey[i];
    IF c IS NOT NULL AND free[c] <= 0 THEN
      verdicts[i] := CASE WHEN mdiscard[i] THEN 'discarded' ELSE 'parked' END;
    ELSIF q IS NOT NULL AND tokens[q] <= 0 THEN
      verdicts[i] := 'throttled';
      limited[i] := 'queue';
    ELSIF r IS NOT NULL AND tokens[r] <= 0 THEN
      verdicts[i] := 'throttled';
      limited[i] := 'job';
    ELSE
      verdicts[i] := 'run';
      IF c IS NOT NULL THEN free[c] := free[c] - 1; END IF;
      IF q IS NOT NULL THEN tokens[q] := tokens[q] - 1; END IF;
      IF r IS NOT NULL THEN tokens[r] := tokens[r] - 1; END IF;
    END IF;
  END LOOP;

  FOR r IN 1 .. nr LOOP
    IF reserved[r] > 0 THEN
      PERFORM pgbus.rate_record(rkeys[r], rintervals[r], reserved[r]);
    END IF;
  END LOOP;
  IF 'throttled' = ANY (verdicts) THEN
    -- A window ran out only because its room was used up, so it has a positive wait.
    FOR r IN 1 .. nr LOOP
      rate_wait[r] := pgbus.rate_wait_ms(rkeys[r], rlimits[r], rintervals[r]);
    END LOOP;
    FOR i IN 1 .. nm LOOP
      IF verdicts[i] = 'throttled' THEN
        waits[i] := greatest(1, rate_wait[CASE WHEN limited[i] = 'queue' THEN mqkey[i] ELSE mrkey[i] END]);
      END IF;
    END LOOP;
    EXECUTE format('UPDATE pgmq.%I m SET vt = clock_timestamp() + x.wait_ms * interval ''1 millisecond'', read_ct = m.read_ct - 1
                      FROM unnest($1::bigint[], $2::int[], $3::text[], $4::float8[]) AS x(id, rc, verdict, wait_ms)
                     WHERE x.verdict = ''throttled'' AND m.msg_id = x.id AND m.read_ct = x.rc', 'q_' || qn)
      USING ids, read_cts, verdicts, waits;
  END IF;
  IF 'parked' = ANY (verdicts) THEN
    EXECUTE format('UPDATE pgmq.%I m SET vt = clock_timestamp() + $4 * interval ''1 second'', read_ct = m.read_ct - 1
                      FROM unnest($1::bigint[], $2::int[], $3::text[]) AS x(id, rc, verdict)
                     WHERE x.verdict = ''parked'' AND m.msg_id = x.id AND m.read_ct = x.rc', 'q_' || qn)
      USING ids, read_cts, verdicts, park_sec;
    INSERT INTO pgbus.blocked AS b (queue_name, msg_id, read_ct, sem_key, slot_limit)
    SELECT qn, x.id, x.rc - 1, ckeys[x.c], climits[x.c]
      FROM unnest(ids, read_cts, verdicts, mckey) AS x(id, rc, verdict, c) WHERE x.verdict = 'parked'
    ON CONFLICT (queue_name, msg_id) DO UPDATE SET read_ct = EXCLUDED.read_ct, sem_key = EXCLUDED.sem_key, slot_limit = EXCLUDED.slot_limit;
    PERFORM pg_notify('pgbus_queue', 'limit:' || md5(k))
       FROM (SELECT DISTINCT ckeys[x.c] AS k FROM unnest(verdicts, mckey) AS x(verdict, c) WHERE x.verdict = 'parked') AS parked_keys;
  END IF;
  IF 'discarded' = ANY (verdicts) THEN
    EXECUTE format(
      'WITH moved AS (DELETE FROM pgmq.%I m USING unnest($1::bigint[], $2::int[], $3::text[], $4::int[]) AS x(id, rc, verdict, c)
                       WHERE x.verdict = ''discarded'' AND m.msg_id = x.id AND m.read_ct = x.rc
                      RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers, x.c)
       INSERT INTO pgmq.%I (msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers)
       SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message,
              coalesce(headers, ''{}''::jsonb) || jsonb_build_object(''pgbus_discarded'',
                jsonb_build_object(''reason'', ''concurrency_limit'', ''key'', ($5::text[])[c], ''limit'', ($6::int[])[c], ''at'', clock_timestamp()))
         FROM moved', 'q_' || qn, 'a_' || qn) USING ids, read_cts, verdicts, mckey, ckeys, climits;
  END IF;
  IF nm > 0 AND nc > 0 THEN
    DELETE FROM pgbus.blocked b USING unnest(ids, verdicts, mckey) AS x(id, verdict, c)
     WHERE x.verdict = 'run' AND x.c IS NOT NULL AND b.queue_name = qn AND b.msg_id = x.id; -- it waited and now runs
  END IF;

  DELETE FROM pgbus.concurrency_leases l USING unnest(ckeys, leased) AS x(k, n)
   WHERE x.n = 0 AND l.sem_key = x.k AND l.holder = admit_leased.holder;
  INSERT INTO pgbus.concurrency_leases AS l (sem_key, holder, process_id, held, slot_limit, expires_at)
  SELECT x.k, admit_leased.holder, admit_leased.process_id, x.n, x.lim, clock_timestamp() + ttl_sec * interval '1 second'
    FROM unnest(ckeys, leased, climits) AS x(k, n, lim) WHERE x.n > 0
  ON CONFLICT (sem_key, holder) DO UPDATE
     SET held = EXCLUDED.held, slot_limit = EXCLUDED.slot_limit, process_id = EXCLUDED.process_id, expires_at = EXCLUDED.expires_at;
  FOR c IN 1 .. nc LOOP
    IF EXISTS (SELECT 1 FROM pgbus.blocked b WHERE b.sem_key = ckeys[c]) THEN
      PERFORM pgbus.hand_off(ckeys[c], climits[c] - others[c] - leased[c]);
      waiting[c] := EXISTS (SELECT 1 FROM pgbus.blocked b WHERE b.sem_key = ckeys[c]);
    END IF;
  END LOOP;
END $$;

-- Keeps one worker's leases alive for ttl_sec more. Returns each lease it still has, with
-- whether messages wait for its key (the worker then gives back the units it does not
-- use; a lease that is gone was taken as dead, and the worker asks again).
CREATE FUNCTION pgbus.renew_leases(holder uuid, ttl_sec float8) RETURNS TABLE (sem_key text, waiting boolean)
LANGUAGE sql AS $$
  UPDATE pgbus.concurrency_leases l SET expires_at = clock_timestamp() + ttl_sec * interval '1 second'
   WHERE l.holder = renew_leases.holder
  RETURNING l.sem_key, EXISTS (SELECT 1 FROM pgbus.blocked b WHERE b.sem_key = l.sem_key);
$$;

-- The maintenance role's pass: drops dead leases (their worker died or stopped renewing),
-- wakes as many waiters of each key as its limit has room for (a hand-off lost to a crash,
-- or units a dead worker held), and drops expired rate sub-windows. Returns the number of
-- waiters woken.
CREATE OR REPLACE FUNCTION pgbus.sweep_limits() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  key text;
  lim integer;
  total integer := 0;
BEGIN
  -- Every key at once, in lock order: taken one by one, a later key could sort before an
  -- earlier one and deadlock against an admission that holds both.
  PERFORM pgbus.lock_limit_keys(ARRAY(
    SELECT 'c:' || sem_key FROM pgbus.concurrency_leases UNION SELECT 'c:' || sem_key FROM pgbus.blocked));
  FOR key IN SELECT DISTINCT sem_key FROM pgbus.concurrency_leases LOOP
    PERFORM pgbus.live_held(key);
  END LOOP;
  FOR key, lim IN SELECT sem_key, max(slot_limit) FROM pgbus.blocked GROUP BY sem_key LOOP
    total := total + pgbus.hand_off(key, lim - pgbus.live_held(key));
  END LOOP;
  DELETE FROM pgbus.rate_windows WHERE expires_at < clock_timestamp();
  RETURN total;
END $$;
