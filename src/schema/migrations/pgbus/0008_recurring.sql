-- Recurring tasks (defineRecurring, the config file's `recurring`): one row per task, kept
-- in step with the definitions by every scheduler at its start, and one row per enqueued
-- tick. The primary key (task_key, run_at) is what makes a tick enqueue exactly once
-- however many schedulers run: each inserts the execution row with ON CONFLICT DO NOTHING
-- and enqueues the job in the same transaction, so the loser of a race (it waits for the
-- winner's commit on the key) inserts nothing and enqueues nothing, and a winner that rolls
-- back leaves the tick to the others.
CREATE TABLE pgbus.recurring_tasks (
  key text PRIMARY KEY,
  cron text NOT NULL,
  timezone text NOT NULL DEFAULT 'UTC',
  job text NOT NULL,
  payload jsonb,
  catch_up jsonb,
  -- Set by `pgbus recurring disable|enable KEY`; a scheduler's start leaves it alone.
  enabled boolean NOT NULL DEFAULT true,
  -- The latest tick enqueued, and the next one due (for `pgbus recurring`).
  last_run_at timestamptz,
  next_run_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  -- When it was last enabled: ticks before it are never caught up.
  enabled_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pgbus.recurring_executions (
  task_key text NOT NULL,
  run_at timestamptz NOT NULL,
  queue text,
  msg_id bigint,
  enqueued_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (task_key, run_at)
);
