import type { Queryable } from "../db/queryable.ts";
import type { RecurringDefinition } from "../jobs/recurring.ts";

/** The SQL of recurring tasks: pgbus.recurring_tasks and pgbus.recurring_executions (migration 0008). */

/** One task as the database has it, for `pgbus recurring` and the scheduler. */
export interface RecurringTaskRow {
  key: string;
  cron: string;
  timezone: string;
  job: string;
  payload: unknown;
  enabled: boolean;
  lastRunAt: Date | null;
  nextRunAt: Date | null;
  /** Ticks at or before this are never enqueued: the later of creation and the last enable. */
  since: Date;
}

const SYNC_TASK = `
INSERT INTO pgbus.recurring_tasks (key, cron, timezone, job, payload, catch_up, next_run_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7)
ON CONFLICT (key) DO UPDATE SET
  cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, job = EXCLUDED.job, payload = EXCLUDED.payload,
  catch_up = EXCLUDED.catch_up, next_run_at = CASE WHEN pgbus.recurring_tasks.enabled THEN EXCLUDED.next_run_at END,
  updated_at = now()
WHERE (pgbus.recurring_tasks.cron, pgbus.recurring_tasks.timezone, pgbus.recurring_tasks.job,
       pgbus.recurring_tasks.payload, pgbus.recurring_tasks.catch_up, pgbus.recurring_tasks.next_run_at)
  IS DISTINCT FROM (EXCLUDED.cron, EXCLUDED.timezone, EXCLUDED.job, EXCLUDED.payload, EXCLUDED.catch_up, EXCLUDED.next_run_at)`;

/** Writes a task's definition; leaves `enabled` and the run times as they are. */
export async function syncTask(db: Queryable, task: RecurringDefinition, nextRunAt: Date | null): Promise<void> {
  await db.query(SYNC_TASK, [
    task.key,
    task.cron,
    task.timezone,
    task.job,
    JSON.stringify(task.payload),
    task.catchUp === null ? null : JSON.stringify(task.catchUp),
    nextRunAt,
  ]);
}

interface TaskRecord {
  key: string;
  cron: string;
  timezone: string;
  job: string;
  payload: unknown;
  enabled: boolean;
  last_run_at: Date | null;
  next_run_at: Date | null;
  since: Date;
}

const SELECT_TASKS = `
SELECT key, cron, timezone, job, payload, enabled, last_run_at, next_run_at, GREATEST(created_at, enabled_at) AS since
FROM pgbus.recurring_tasks`;

function toRow(record: TaskRecord): RecurringTaskRow {
  return {
    key: record.key,
    cron: record.cron,
    timezone: record.timezone,
    job: record.job,
    payload: record.payload,
    enabled: record.enabled,
    lastRunAt: record.last_run_at,
    nextRunAt: record.next_run_at,
    since: record.since,
  };
}

/** Every task, by key; with `keys`, only those. */
export async function listTasks(db: Queryable, keys?: readonly string[]): Promise<RecurringTaskRow[]> {
  const result =
    keys === undefined
      ? await db.query(`${SELECT_TASKS} ORDER BY key`)
      : await db.query(`${SELECT_TASKS} WHERE key = ANY($1::text[]) ORDER BY key`, [keys]);
  return (result.rows as TaskRecord[]).map(toRow);
}

/**
 * Enables or disables a task; returns false when there is no such task. Enabling moves
 * `enabled_at` to now, so the ticks that passed while it was disabled are not caught up.
 */
export async function setTaskEnabled(db: Queryable, key: string, enabled: boolean): Promise<boolean> {
  const result = await db.query(
    `UPDATE pgbus.recurring_tasks
        SET enabled = $2, updated_at = now(),
            enabled_at = CASE WHEN $2 AND NOT enabled THEN now() ELSE enabled_at END,
            next_run_at = CASE WHEN $2 THEN next_run_at END
      WHERE key = $1`,
    [key, enabled],
  );
  return (result.rowCount ?? 0) > 0;
}

/**
 * Takes one tick of a task, inside the caller's transaction: inserts its execution row
 * unless one exists (another scheduler took the tick: this statement waits for that
 * transaction and then inserts nothing) or the task is disabled. True when taken: the
 * caller then enqueues the job and calls recordTick in the same transaction.
 */
export async function claimTick(db: Queryable, key: string, runAt: Date): Promise<boolean> {
  const result = await db.query(
    `INSERT INTO pgbus.recurring_executions (task_key, run_at)
     SELECT key, $2 FROM pgbus.recurring_tasks WHERE key = $1 AND enabled
     ON CONFLICT (task_key, run_at) DO NOTHING`,
    [key, runAt],
  );
  return (result.rowCount ?? 0) > 0;
}

/** Records the enqueued message of a taken tick and moves the task's run times on. */
export async function recordTick(
  db: Queryable,
  key: string,
  runAt: Date,
  queue: string,
  msgId: string,
  nextRunAt: Date | null,
): Promise<void> {
  await db.query(
    `WITH execution AS (
       UPDATE pgbus.recurring_executions SET queue = $3, msg_id = $4 WHERE task_key = $1 AND run_at = $2
     )
     UPDATE pgbus.recurring_tasks
        SET last_run_at = GREATEST(last_run_at, $2), next_run_at = $5
      WHERE key = $1`,
    [key, runAt, queue, msgId, nextRunAt],
  );
}

/** Execution rows older than `retentionMs`: past every catch-up window, so no longer needed for uniqueness. */
export async function pruneExecutions(db: Queryable, keys: readonly string[], retentionMs: number): Promise<number> {
  const result = await db.query(
    `DELETE FROM pgbus.recurring_executions
      WHERE task_key = ANY($1::text[]) AND run_at < now() - $2 * interval '1 millisecond'`,
    [keys, retentionMs],
  );
  return result.rowCount ?? 0;
}
