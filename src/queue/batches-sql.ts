/**
 * The statements and fragments of batches (bus.batch; table pgbus.batches, migration
 * pgbus/0013). The fragments are composed into the ack and dead-letter statements of
 * sql.ts and ack-sql.ts, so a batch job's counter moves in the same statement, and so the
 * same transaction, as the job's own ack or move to the DLQ.
 */

/** The header that tags a message with its batch id. */
export const BATCH_HEADER = "pgbus_batch";

/**
 * Adds finished jobs to their batches' counters. `source` is a relation of (batch_id text,
 * succeeded int, dead int), one row per batch. The update that makes a sealed batch's
 * counts reach its total sets finished_at, which fires the trigger that enqueues the
 * callbacks. Concurrent updates of one batch queue on its row lock and the later one
 * recomputes from the earlier one's result, so exactly one sees the batch finish. A
 * finished batch is left alone (a dead letter retried by hand and run again is not
 * counted twice).
 */
export function batchProgress(source: string): string {
  return `UPDATE pgbus.batches b
        SET succeeded = b.succeeded + n.succeeded, dead = b.dead + n.dead,
            finished_at = CASE WHEN b.sealed AND b.succeeded + n.succeeded + b.dead + n.dead >= b.total THEN clock_timestamp() END
       FROM ${source} n WHERE b.id = n.batch_id AND b.finished_at IS NULL`;
}

/** The rows of `relation` (with a headers column) that belong to a batch, counted per batch as `column`. */
export function perBatch(relation: string, column: "succeeded" | "dead"): string {
  const other = column === "succeeded" ? "dead" : "succeeded";
  return `(SELECT headers ->> '${BATCH_HEADER}' AS batch_id, count(*)::int AS ${column}, 0 AS ${other}
             FROM ${relation} WHERE headers ? '${BATCH_HEADER}' GROUP BY 1)`;
}

/**
 * $1 id, $2 context, $3 callbacks, $4 jobs added. Makes the batch (on its first enqueue)
 * or adds to its total; no row back when it is sealed. Runs in the transaction that sends
 * the jobs, so the total and the jobs commit together.
 */
export const ADD_TO_BATCH = `
  INSERT INTO pgbus.batches (id, context, callbacks, total) VALUES ($1, $2::jsonb, $3::jsonb, $4)
  ON CONFLICT (id) DO UPDATE SET total = pgbus.batches.total + EXCLUDED.total WHERE NOT pgbus.batches.sealed
  RETURNING id`;

/** $1 id, $2 context, $3 callbacks. Makes the batch if no job was added (an empty batch finishes when sealed). */
export const CREATE_BATCH = `
  INSERT INTO pgbus.batches (id, context, callbacks) VALUES ($1, $2::jsonb, $3::jsonb) ON CONFLICT (id) DO NOTHING`;

/** $1 id. Seals the batch; finished at once if all its jobs are (its callbacks are enqueued by the same statement). */
export const SEAL_BATCH = `
  UPDATE pgbus.batches SET sealed = true,
         finished_at = CASE WHEN succeeded + dead >= total THEN clock_timestamp() END
   WHERE id = $1 AND NOT sealed
  RETURNING id`;

/** $1 id. */
export const BATCH_STATE = `
  SELECT id, total, succeeded, dead, sealed, created_at, finished_at, context FROM pgbus.batches WHERE id = $1`;
