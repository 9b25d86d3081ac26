import type { NamedStatement } from "../db/queryable.ts";
import { claimPicked, dueRows, namedStatement } from "./sql.ts";
import { queueTable } from "./names.ts";

/**
 * The statements of the circuit breaker (pgbus.queue_states, migration pgbus/0013). Failures
 * are counted by a trigger on pgbus.failed_jobs; what is here is the claim of a breaker's
 * queue (which half-opens it), the reset a success makes, and configuration and state.
 * Queue names are validated names (names.ts); every value is a parameter.
 */

/** Columns that close the breaker (and end a pause): state, count, back-off and probe cleared. */
export const CLOSED = `paused = false, paused_at = NULL, paused_by = NULL, consecutive_failures = 0, breaker_state = 'closed',
       breaker_backoff_ms = NULL, breaker_until = NULL, breaker_probe_msg_id = NULL, breaker_opened_at = NULL`;

/**
 * The claim of a queue with a breaker (acks go in their own statement first). $1 vt
 * seconds, $2 qty. While the breaker is open and its back-off is not over, nothing is
 * claimed (the queue is paused). Once it is over, the first claim (across every process:
 * the state row is updated by one of them, the others re-read it and see it half-open)
 * takes exactly one message, the probe, and moves the breaker to half-open until the
 * probe's VT runs out; `probe` is true on that row. The VT that counts is the probe
 * message's own, read at each claim: a live worker keeps extending it, so a probe that runs
 * longer than one VT is still the only one, and once its worker died (SIGKILL) the VT runs
 * out and a next probe goes through.
 */
export const claimWithBreaker = (queue: string): NamedStatement =>
  namedStatement(
    "claim_breaker",
    queue,
    () =>
      `WITH state AS (
       SELECT paused, paused AND breaker_state IN ('open', 'half_open') AND breaker_until <= clock_timestamp()
              AND NOT (breaker_state = 'half_open' AND EXISTS (
                SELECT 1 FROM ${queueTable(queue)} p WHERE p.msg_id = breaker_probe_msg_id AND p.vt > clock_timestamp())) AS probing
         FROM pgbus.queue_states WHERE queue_name = '${queue}'),
     picked AS (${dueRows(
       queue,
       "CASE WHEN coalesce((SELECT probing FROM state), false) THEN 1 ELSE $2 END",
       "NOT coalesce((SELECT paused AND NOT probing FROM state), false)",
     )}),
     gate AS (
       UPDATE pgbus.queue_states
          SET breaker_state = 'half_open', breaker_until = clock_timestamp() + $1::float8 * interval '1 second',
              breaker_probe_msg_id = (SELECT msg_id FROM picked), updated_at = now()
        WHERE queue_name = '${queue}' AND (SELECT probing FROM state) AND EXISTS (SELECT 1 FROM picked)
          AND paused AND breaker_state IN ('open', 'half_open') AND breaker_until <= clock_timestamp()
       RETURNING 1)
     ${claimPicked(queue, " AND (NOT coalesce((SELECT probing FROM state), false) OR EXISTS (SELECT 1 FROM gate))")},
               EXISTS (SELECT 1 FROM gate) AS probe`,
  );

/**
 * What a success does to the breaker, as an UPDATE over the CTE `acked` of an ack
 * statement: resets the count of consecutive failures, and closes a half-open breaker when
 * the probe is among the acked messages. Writes nothing in the common case (no failures
 * counted, breaker closed).
 */
export function breakerSuccess(queue: string): string {
  const probeAcked = `breaker_state = 'half_open' AND breaker_probe_msg_id IN (SELECT msg_id FROM acked)`;
  return `UPDATE pgbus.queue_states
        SET consecutive_failures = 0, updated_at = now(),
            paused = CASE WHEN ${probeAcked} THEN false ELSE paused END,
            paused_at = CASE WHEN ${probeAcked} THEN NULL ELSE paused_at END,
            paused_by = CASE WHEN ${probeAcked} THEN NULL ELSE paused_by END,
            breaker_backoff_ms = CASE WHEN ${probeAcked} THEN NULL ELSE breaker_backoff_ms END,
            breaker_until = CASE WHEN ${probeAcked} THEN NULL ELSE breaker_until END,
            breaker_opened_at = CASE WHEN ${probeAcked} THEN NULL ELSE breaker_opened_at END,
            breaker_probe_msg_id = CASE WHEN ${probeAcked} THEN NULL ELSE breaker_probe_msg_id END,
            breaker_state = CASE WHEN ${probeAcked} THEN 'closed' ELSE breaker_state END
      WHERE queue_name = '${queue}' AND EXISTS (SELECT 1 FROM acked) AND (consecutive_failures > 0 OR ${probeAcked})`;
}

/** $1 queue, $2 threshold, $3 base back-off ms, $4 max back-off ms. A worker with a breaker on the queue writes it at start. */
export const CONFIGURE_BREAKER = `
  INSERT INTO pgbus.queue_states (queue_name, breaker_threshold, breaker_base_ms, breaker_max_ms)
  VALUES ($1, $2, $3, $4)
  ON CONFLICT (queue_name) DO UPDATE
     SET breaker_threshold = EXCLUDED.breaker_threshold, breaker_base_ms = EXCLUDED.breaker_base_ms,
         breaker_max_ms = EXCLUDED.breaker_max_ms, updated_at = now()
   WHERE (pgbus.queue_states.breaker_threshold, pgbus.queue_states.breaker_base_ms, pgbus.queue_states.breaker_max_ms)
         IS DISTINCT FROM (EXCLUDED.breaker_threshold, EXCLUDED.breaker_base_ms, EXCLUDED.breaker_max_ms)`;

/** $1 queue, $2 msg id, $3 attempt: the breaker's state if that failed run opened it. */
export const OPENED_BY = `
  SELECT breaker_backoff_ms, consecutive_failures FROM pgbus.queue_states
   WHERE queue_name = $1 AND breaker_state = 'open' AND breaker_tripped_by = $2 AND breaker_tripped_attempt = $3`;

const STATE_COLUMNS = `queue_name, paused, paused_at, paused_by, breaker_threshold, breaker_base_ms, breaker_max_ms,
       consecutive_failures, breaker_state, breaker_backoff_ms, breaker_until, breaker_opened_at`;

/** $1 queue. */
export const QUEUE_STATE = `SELECT ${STATE_COLUMNS} FROM pgbus.queue_states WHERE queue_name = $1`;

/** Every queue that is paused or has a breaker, for `pgbus status`. */
export const QUEUE_STATES = `
  SELECT ${STATE_COLUMNS} FROM pgbus.queue_states WHERE paused OR breaker_threshold IS NOT NULL ORDER BY queue_name`;
