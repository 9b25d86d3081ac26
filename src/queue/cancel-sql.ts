import type { NamedStatement } from "../db/queryable.ts";
import { CANCEL_HEADER, CANCEL_NOTIFY_PREFIX } from "./cancel-headers.ts";
import { archiveTable, queueTable } from "./names.ts";
import { MESSAGE_COLUMNS, fencedDelete, namedStatement, prefixed } from "./sql.ts";

/**
 * The statements of cancellation. Every one takes the message's row lock (a DELETE, an
 * UPDATE or FOR UPDATE), so a cancel and a worker's claim, ack, retry or dead-lettering of
 * the same message run one after the other, never interleaved; the worker's statements are
 * fenced by the read_ct of its claim (see fencedDelete in sql.ts).
 */

const REQUESTED = `'${CANCEL_HEADER.requested}'`;

/** Inserts the rows of CTE `source` into the queue's archive with `headers` as their headers; returns their ids. */
function archiveAs(queue: string, source: string, headers: string): string {
  const kept = MESSAGE_COLUMNS.replace(", headers", "");
  return `INSERT INTO ${archiveTable(queue)} (${MESSAGE_COLUMNS}) SELECT ${kept}, ${headers} FROM ${source} RETURNING msg_id`;
}

/**
 * $1 id, $2 who cancels (text or null). One statement, one of four outcomes:
 * - the message waits (visible now) or is delayed (never claimed: read_ct 0): it moves to
 *   the archive with `pgbus_cancelled_at` / `pgbus_cancelled_by` -> 'cancelled';
 * - it is claimed (a run may hold it): `pgbus_cancel_requested` is set on it (kept if
 *   already there) and a cancel notification is sent -> 'cancelling';
 * - it is gone: archived as cancelled -> 'cancelled'; otherwise archived, dead-lettered or
 *   deleted (its id was handed out by the queue's sequence) -> 'already_finished';
 * - the queue never had that id -> 'not_found'.
 * A claim that holds the row lock when the cancel arrives commits first: the cancel then
 * sees the claimed row (FOR UPDATE rereads it) and asks its run to stop.
 */
export const cancelMessage = (queue: string): NamedStatement =>
  namedStatement(
    "cancel",
    queue,
    () =>
      `WITH target AS (
       SELECT msg_id, (vt <= clock_timestamp() OR read_ct = 0) AS waiting, coalesce(headers ? ${REQUESTED}, false) AS requested
         FROM ${queueTable(queue)} WHERE msg_id = $1::bigint FOR UPDATE),
     removed AS (
       DELETE FROM ${queueTable(queue)} q USING target t WHERE q.msg_id = t.msg_id AND t.waiting
       RETURNING ${prefixed("q", MESSAGE_COLUMNS)}),
     archived AS (
       ${archiveAs(queue, "removed", `coalesce(headers, '{}'::jsonb) || jsonb_build_object('${CANCEL_HEADER.cancelledAt}', now(), '${CANCEL_HEADER.cancelledBy}', $2::text)`)}),
     marked AS (
       UPDATE ${queueTable(queue)} q
          SET headers = coalesce(q.headers, '{}'::jsonb) || jsonb_build_object(${REQUESTED}, jsonb_build_object('at', now(), 'by', $2::text))
         FROM target t WHERE q.msg_id = t.msg_id AND NOT t.waiting AND NOT t.requested
       RETURNING q.msg_id),
     notified AS (
       SELECT pg_notify('pgbus_queue', '${CANCEL_NOTIFY_PREFIX}${queue}:' || msg_id) FROM target WHERE NOT waiting)
     SELECT CASE
         WHEN EXISTS (SELECT 1 FROM archived) THEN 'cancelled'
         WHEN (SELECT count(*) FROM notified) + (SELECT count(*) FROM marked) > 0 THEN 'cancelling'
         WHEN EXISTS (SELECT 1 FROM ${archiveTable(queue)} WHERE msg_id = $1::bigint AND headers ? '${CANCEL_HEADER.cancelledAt}') THEN 'cancelled'
         WHEN EXISTS (SELECT 1 FROM ${archiveTable(queue)} WHERE msg_id = $1::bigint) THEN 'already_finished'
         WHEN $1::bigint <= (SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END FROM pgmq."q_${queue}_msg_id_seq" s) THEN 'already_finished'
         ELSE 'not_found' END AS status`,
  );

/**
 * $1 ids, $2 read_cts (fenced, see fencedDelete). The worker's settlement of runs whose
 * cancel was requested: each message that still carries `pgbus_cancel_requested` moves to
 * the archive, the request turned into `pgbus_cancelled_at` / `pgbus_cancelled_by`. A
 * message without the request is left alone, so the database, not the worker's memory,
 * decides that a run ends cancelled. Returns the ids archived.
 */
export const cancelClaimed = (queue: string): NamedStatement =>
  namedStatement(
    "cancel_claimed",
    queue,
    () =>
      `WITH moved AS (${fencedDelete(queue, 1)} AND q.headers ? ${REQUESTED}
       RETURNING ${prefixed("q", MESSAGE_COLUMNS)})
     ${archiveAs(
       queue,
       "moved",
       `(headers - ${REQUESTED}) || jsonb_build_object('${CANCEL_HEADER.cancelledAt}', headers -> ${REQUESTED} -> 'at', '${CANCEL_HEADER.cancelledBy}', headers -> ${REQUESTED} -> 'by')`,
     )}`,
  );

/**
 * The messages among a worker's in-flight ones whose cancel was requested: the backstop for
 * a cancel notification the worker missed. Per queue, in the order given, its ids
 * (bigint[]); one statement for all of them (primary-key lookups).
 */
export function cancelRequested(queues: readonly string[]): NamedStatement {
  return namedStatement("cancel_requested", queues.join(","), () =>
    queues
      .map(
        (queue, index) =>
          `SELECT '${queue}' AS queue, msg_id FROM ${queueTable(queue)} WHERE msg_id = ANY($${index + 1}::bigint[]) AND headers ? ${REQUESTED}`,
      )
      .join("\nUNION ALL\n"),
  );
}
