import { archiveTable, queueTable } from "./names.ts";

/**
 * The statements of queue inspection and of the dead-letter commands (`pgbus status`,
 * `pgbus queues`, `pgbus dlq`). Table names come only from validated queue names; every
 * value is a parameter. They run a few times a second at most, so they are not prepared.
 */

// ------------------------------------------------------------------- queue inspection

/** $1 seconds. Uses the archive's archived_at index. */
export function archivedSince(queue: string): string {
  return `SELECT count(*)::int AS count FROM ${archiveTable(queue)} WHERE archived_at > now() - $1::float8 * interval '1 second'`;
}

// ---------------------------------------------------------------------- dead letters

/** $1 limit. */
export function listDeadLetters(dlq: string): string {
  return `SELECT msg_id, read_ct, enqueued_at, message, headers FROM ${queueTable(dlq)} ORDER BY msg_id LIMIT $1`;
}

/**
 * $1 ids (bigint[], or null for all), $2 header keys to drop. Moves messages from the DLQ
 * back to their queue in one statement, so each is in exactly one of the two whatever
 * happens. They return as new messages (read_ct 0): a retry from the DLQ starts afresh.
 */
export function retryDeadLetters(queue: string, dlq: string): string {
  return `
    WITH moved AS (
      DELETE FROM ${queueTable(dlq)} WHERE $1::bigint[] IS NULL OR msg_id = ANY($1::bigint[])
      RETURNING msg_id, message, headers),
    inserted AS (
      INSERT INTO ${queueTable(queue)} (vt, message, headers)
      SELECT clock_timestamp(), message, nullif(coalesce(headers, '{}'::jsonb) - $2::text[], '{}'::jsonb)
        FROM moved ORDER BY msg_id
      RETURNING msg_id)
    SELECT (SELECT coalesce(array_agg(msg_id::text ORDER BY msg_id), '{}') FROM moved) AS from_ids,
           (SELECT coalesce(array_agg(msg_id::text ORDER BY msg_id), '{}') FROM inserted) AS to_ids`;
}

/** $1 ids (bigint[], or null for all). */
export function discardDeadLetters(dlq: string): string {
  return `
    WITH gone AS (DELETE FROM ${queueTable(dlq)} WHERE $1::bigint[] IS NULL OR msg_id = ANY($1::bigint[]) RETURNING msg_id)
    SELECT coalesce(array_agg(msg_id::text ORDER BY msg_id), '{}') AS ids FROM gone`;
}
