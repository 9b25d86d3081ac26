import type { Queryable } from "../db/queryable.ts";
import { PgbusError } from "../errors.ts";
import { PAUSED_QUEUES, PAUSE_QUEUE, RESUME_QUEUE } from "./admin-sql.ts";
import type { BreakerState } from "./breaker.ts";
import { QueueClient } from "./client.ts";
import { validateQueueName } from "./names.ts";

/**
 * Pausing a queue: every worker, on every host, stops claiming from it with its next claim
 * (the claim statement reads pgbus.queue_states); running jobs finish; enqueues are
 * accepted. A resume wakes the queue's workers at once (NOTIFY).
 */

export interface PausedQueue {
  queue: string;
  pausedAt: Date;
  pausedBy: string | null;
}

/** Throws QUEUE_NOT_FOUND (naming the queue) unless `queue` is a valid name of an existing queue. */
export async function requireQueue(db: Queryable, queue: string): Promise<void> {
  validateQueueName(queue);
  if (!(await new QueueClient(db).queueExists(queue))) {
    throw new PgbusError("QUEUE_NOT_FOUND", `queue ${JSON.stringify(queue)} does not exist; \`pgbus queues\` lists the queues`);
  }
}

/** Pauses `queue` (idempotent); returns since when it is paused. Throws QUEUE_NOT_FOUND for an unknown queue. */
export async function pauseQueue(db: Queryable, queue: string, pausedBy?: string): Promise<Date> {
  await requireQueue(db, queue);
  const result = await db.query(PAUSE_QUEUE, [queue, pausedBy ?? null]);
  return (result.rows[0] as { paused_at: Date }).paused_at;
}

/**
 * Resumes `queue` and closes its circuit breaker; `resumed` is false when it was not
 * paused, `breakerWas` the breaker's state before (null when it was not paused). Throws
 * QUEUE_NOT_FOUND for an unknown queue.
 */
export async function resumeQueue(db: Queryable, queue: string): Promise<{ resumed: boolean; breakerWas: BreakerState | null }> {
  await requireQueue(db, queue);
  const row = (await db.query(RESUME_QUEUE, [queue])).rows[0] as { breaker_state: BreakerState } | undefined;
  return { resumed: row !== undefined, breakerWas: row?.breaker_state ?? null };
}

export async function pausedQueues(db: Queryable): Promise<PausedQueue[]> {
  const result = await db.query(PAUSED_QUEUES);
  return (result.rows as Array<{ queue_name: string; paused_at: Date; paused_by: string | null }>).map((row) => ({
    queue: row.queue_name,
    pausedAt: row.paused_at,
    pausedBy: row.paused_by,
  }));
}
