import type { NamedStatement } from "../db/queryable.ts";
import { FIFO_GROUP_HEADER } from "./client-args.ts";
import { queueTable } from "./names.ts";
import { ackCtes, claimPicked, namedStatement, notPaused } from "./sql.ts";

/**
 * The FIFO worker's claim (worker option `fifo`): like claimAndAck (same parameters, same
 * piggybacked acks, same result), but a message with a FIFO group (header x-pgmq-group,
 * written by the enqueue option `groupKey`) is claimable only when
 * - it is its group's oldest message (the head), and
 * - no message of its group is in flight: claimed (read_ct > 0) and not visible again
 *   yet. That covers a running head, a head waiting for its retry (so a retry keeps the
 *   group blocked until it succeeds or is dead-lettered) and a message that committed
 *   out of msg_id order and got claimed before an older one appeared.
 * Messages without a group are claimed as by claimAndAck. The messages this statement
 * acks are left out of both checks (they are finished), so a group's next message is
 * claimed in the same round trip that acks its predecessor; an ack the fence refused (the
 * claim lapsed, someone else runs it now) is not in `acked` and keeps the group blocked.
 *
 * Both checks read the statement's snapshot, so two such claims running at once could
 * each miss the other's claim. The worker store therefore runs this statement after
 * FIFO_CLAIM_LOCK in the same transaction: FIFO claims of one queue take turns, and each
 * one's snapshot, taken after the lock, sees every earlier claim committed.
 *
 * Cost: the group check reads every grouped message of the queue (one pass, grouped by
 * header), so a claim grows with the queue's depth; fine for thousands of waiting
 * messages, slower for millions.
 */
export const claimGroupHeadsAndAck = (queue: string, mode: "archive" | "delete"): NamedStatement =>
  namedStatement(`fifo_claim_${mode}`, queue, () => {
    const group = `headers->>'${FIFO_GROUP_HEADER}'`;
    return `WITH ${ackCtes(queue, mode, 3)},
     open_heads AS (
       SELECT min(msg_id) AS msg_id FROM ${queueTable(queue)}
        WHERE ${group} IS NOT NULL AND msg_id NOT IN (SELECT msg_id FROM acked)
        GROUP BY ${group}
       HAVING NOT bool_or(read_ct > 0 AND vt > clock_timestamp())),
     picked AS (
       SELECT ctid, tableoid, pgbus.message_priority(headers) AS priority FROM ${queueTable(queue)}
        WHERE vt <= clock_timestamp() AND (SELECT count(*) FROM acked) >= 0 AND ${notPaused(queue)}
          AND (${group} IS NULL OR msg_id IN (SELECT msg_id FROM open_heads))
        ORDER BY msg_id LIMIT $2
        FOR UPDATE SKIP LOCKED)
     ${claimPicked(queue)}`;
  });

/**
 * $1 queue name. Taken first in the transaction of a FIFO claim, held until it commits:
 * FIFO claims of one queue run one at a time, across every process. PGMQ's two-key form
 * (like its per-queue lock), so it cannot collide with the bigint keys of ADVISORY_LOCK.
 */
export const FIFO_CLAIM_LOCK = "SELECT pg_advisory_xact_lock(hashtext('pgbus.fifo_claim'), hashtext($1::text))";
