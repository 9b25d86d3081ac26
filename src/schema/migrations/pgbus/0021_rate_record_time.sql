-- When an admission's rate starts were recorded. A worker must start an admitted message
-- within a twentieth of the interval of the moment its start was recorded (the window's
-- spare sub-window covers no more), and it knows only when it sent the admission. The
-- admission may wait for its keys' locks behind other workers' admissions first, so a
-- deadline counted from the send alone would throw away good starts whenever admissions
-- queue. rate_record now notes, in a transaction-local setting, the milliseconds from the
-- statement's start to the first start it recorded; the worker adds them to its send time.
CREATE OR REPLACE FUNCTION pgbus.rate_record(key text, interval_ms float8, starts integer) RETURNS void
LANGUAGE sql AS $$
  SELECT set_config('pgbus.rate_recorded_ms',
                    coalesce(nullif(current_setting('pgbus.rate_recorded_ms', true), ''),
                             (extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000)::text),
                    true);
  INSERT INTO pgbus.rate_windows AS w (rate_key, bucket, starts, expires_at)
  VALUES (key, floor(extract(epoch FROM clock_timestamp()) * 1000 / (interval_ms / 20)), starts,
          clock_timestamp() + 2 * interval_ms * interval '1 millisecond')
  ON CONFLICT (rate_key, bucket) DO UPDATE SET starts = w.starts + EXCLUDED.starts;
$$;
