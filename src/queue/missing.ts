import { MIGRATE_HINT, isUndefinedTable, missingQueueOf } from "../db/pg-errors.ts";
import { PgbusError } from "../errors.ts";

/**
 * A queue that is not there: dropped (pgmq.drop_queue, `pgbus queues drop`) while it was in
 * use, or never made. Every statement on a queue's tables can meet it, since a drop takes
 * no lock the hot path waits for; callers get this typed error naming the queue, never the
 * database's "relation does not exist" (which stays as its `cause`).
 */
export function queueNotFound(queue: string, cause: unknown): PgbusError {
  return new PgbusError(
    "QUEUE_NOT_FOUND",
    `queue ${queue} does not exist: create it with createQueue() (or it was dropped while in use); ` +
      `if the database was never migrated, ${MIGRATE_HINT} first`,
    { cause },
  );
}

/** `error` as QUEUE_NOT_FOUND when it says a queue's table does not exist; any other error as it is. */
export function asQueueNotFound(error: unknown): unknown {
  const queue = missingQueueOf(error);
  return queue === undefined ? error : queueNotFound(queue, error);
}

/** Whether `error` means a queue is gone: QUEUE_NOT_FOUND, or the undefined-table error it is made from. */
export function isQueueGone(error: unknown): boolean {
  return isUndefinedTable(error) || (error instanceof PgbusError && error.code === "QUEUE_NOT_FOUND");
}
