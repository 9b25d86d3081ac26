import { createHash } from "node:crypto";
import type { NamedStatement } from "../db/queryable.ts";
import { batchProgress, perBatch } from "./batches-sql.ts";
import { DEAD_LETTER_HEADER } from "./dead-letter.ts";
import { archiveTable, queueTable, validateQueueName } from "./names.ts";

/**
 * Every statement the queue client and the worker send, in one place. Table names come
 * only from validated queue names (names.ts); every value is a parameter. Statements are
 * named per queue so pg prepares each once per connection.
 */
const MESSAGE_COLUMNS = "msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers";

const cache = new Map<string, NamedStatement>();

function statement(op: string, queue: string, build: () => string): NamedStatement {
  const key = `${op}:${queue}`;
  let found = cache.get(key);
  if (!found) {
    // pg reuses a prepared statement by name, so a name must never stand for two texts:
    // names too long for PostgreSQL's 63 bytes are replaced by a hash of the key.
    const plain = `pgbus_${op}_${queue}`;
    const name = plain.length <= 63 ? plain : `pgbus_${op}_${createHash("sha1").update(key).digest("hex").slice(0, 24)}`;
    found = { name, text: build() };
    cache.set(key, found);
  }
  return found;
}

/** $1 message, $2 headers, $3 delay in ms, $4 earliest visible time (or null). */
export const sendOne = (queue: string): NamedStatement =>
  statement(
    "send",
    queue,
    () =>
      `INSERT INTO ${queueTable(queue)} (vt, message, headers)
     VALUES (greatest(clock_timestamp() + $3::float8 * interval '1 millisecond', coalesce($4::timestamptz, '-infinity')), $1::jsonb, $2::jsonb)
     RETURNING msg_id`,
  );

/** $1 JSON array of messages, $2 JSON array of headers (or null), $3 delay ms, $4 visible time. One statement for any count. */
export const sendMany = (queue: string): NamedStatement =>
  statement(
    "send_batch",
    queue,
    () =>
      `INSERT INTO ${queueTable(queue)} (vt, message, headers)
     SELECT greatest(clock_timestamp() + $3::float8 * interval '1 millisecond', coalesce($4::timestamptz, '-infinity')), m.msg, $2::jsonb -> (m.ord::int - 1)
       FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS m(msg, ord)
      ORDER BY m.ord
     RETURNING msg_id`,
  );

/** $1 vt seconds, $2 qty. Due messages in claim order (see dueRows); rows other readers hold are skipped, not waited for. */
export const readBatch = (queue: string): NamedStatement =>
  statement(
    "read",
    queue,
    () =>
      `WITH picked AS (${dueRows(queue, "$2", "true")})
     UPDATE ${queueTable(queue)} q
        SET vt = clock_timestamp() + $1::float8 * interval '1 second', read_ct = q.read_ct + 1, last_read_at = clock_timestamp()
       FROM picked WHERE ${pickedRow("q")}
     RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers`,
  );

/** The priority levels, best first: `pgbus_priority` 0-9, 0 runs first (see sql of migration pgbus/0010). */
const PRIORITY_LEVELS = "(VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)) AS level(priority)";

/**
 * Up to `qty` due messages, locked (FOR UPDATE SKIP LOCKED): the highest priority first,
 * then the oldest VT (the time a message became due: its send, its runAt, the end of its
 * retry backoff), then msg_id. Returns ctid, tableoid, msg_id and priority. `gate` is a condition
 * evaluated once, before any row is locked.
 *
 * One probe per priority level into the queue's claim index (priority, vt, msg_id) from
 * migration pgbus/0010, each bounded by `vt <= statement_timestamp()`: the scan reaches only
 * due rows, so delayed messages, retries in backoff and in-flight messages (all with a VT
 * in the future) cost nothing however many there are. The bound must be a stable function
 * (clock_timestamp() would make it a filter instead of an index condition). The levels are
 * probed in order and the outer LIMIT stops the nested loop as soon as it has `qty` rows,
 * so lower levels are not even probed when higher ones fill the claim, and no row beyond
 * `qty` is locked. The probe's LIMIT is a sub-select so that no plan knows its value: a
 * plan made for the value (the first five runs of a prepared statement, every run of an
 * unnamed one, as through PgBouncer) on a queue that was never analyzed thought the level
 * held fewer rows than the limit and sorted every due row instead (30 ms per claim of 150
 * from 50,000 ready rows, instead of 1.4 ms); with the value unknown the planner walks
 * the index, as the generic plan does. Measured with 100,000 delayed rows ahead: 0.2 ms per claim of 100
 * instead of 13 ms through the msg_id order (docs/architecture.md). On a partitioned queue
 * (`partitioned`) the probe also stops at the msg_id sequence's last value, so that the
 * partitions made ahead are pruned (see PartitionedClaim).
 */
export function dueRows(queue: string, qty: string, gate: string, floors?: ClaimFloorParams, partitioned?: PartitionedClaim): string {
  // A level's floor: its probe starts at (vt, msg_id) >= the floor, past the dead index entries below it.
  const floor = floors
    ? ` AND (vt, msg_id) >= (coalesce('epoch'::timestamptz + (${floors.micros})[level.priority + 1] * interval '1 microsecond', '-infinity'),
                             coalesce((${floors.ids})[level.priority + 1], 0))`
    : "";
  const upTo = partitioned?.sequenceBound ? `\n             AND msg_id <= (SELECT last_value FROM ${queueSequence(queue)})` : "";
  return `SELECT due.ctid, due.tableoid, due.msg_id, due.due_us, level.priority FROM ${PRIORITY_LEVELS}
        CROSS JOIN LATERAL (
          SELECT ctid, tableoid, msg_id, (extract(epoch FROM vt) * 1000000)::bigint AS due_us FROM ${queueTable(queue)}
           WHERE pgbus.message_priority(headers) = level.priority AND vt <= statement_timestamp()${floor}${upTo}
           ORDER BY vt, msg_id LIMIT (SELECT ${qty}::bigint)
           FOR UPDATE SKIP LOCKED) due
       WHERE ${gate}
       LIMIT ${qty}`;
}

/**
 * How a claim statement is shaped for a partitioned queue (pgmq.create_partitioned, pg_partman
 * partitions by msg_id): the worker store asks once per queue (PARTITIONED_QUEUE) and passes
 * this to claimAndAck. A plain queue's statements are built without it.
 *
 * On a partitioned queue the claim index is one index per partition, and pg_partman keeps
 * four empty partitions made ahead plus the default one. Planned as for a plain queue, a
 * claim probed every partition once per priority level (10 levels x 6 partitions), its
 * UPDATE ran a TID scan in every partition, and its ack, a join on unnest($3, $4), was
 * planned (in the generic plan a named statement settles on) as a hash join over a
 * sequential scan of every partition: 20,000 rows read per claim once the queue had
 * statistics. The partitioned claim bounds each of these so that the executor prunes the
 * partitions that cannot hold the rows (runtime pruning: an initplan's value, or the outer
 * row of a nested loop, bounds the partition key msg_id):
 * - the probe: `msg_id <= last_value` of the queue's msg_id sequence (dueRows), so the
 *   partitions made ahead of the ids handed out so far are never probed. No committed row
 *   can have a higher id: its id came from the sequence before it was inserted. Old
 *   partitions below the queue's rows are not bounded (finding the lowest live id costs a
 *   walk over the dead entries of every drained partition); the partition maintenance drops
 *   them once they are empty, and the claim floors step over their dead index entries.
 * - the UPDATE: `msg_id BETWEEN` the lowest and highest id picked (pickedRow), so its TID
 *   scans run only in the partitions the picked rows are in;
 * - the ack (fencedDelete): `msg_id BETWEEN` the lowest and highest id acked, which prunes
 *   the partitions none of them is in whatever the join (in a generic plan, PostgreSQL 15
 *   prunes nothing by `msg_id = ANY` of a parameter array), and `msg_id = ANY($3)`, so each
 *   acked id is found through the msg_id index of its partition rather than by a scan of it.
 * A queue partitioned by time (enqueued_at) takes the same statement: the msg_id bounds
 * prune nothing there, but cost nothing either, and the ack still goes through the index.
 */
export interface PartitionedClaim {
  /** The queue's msg_id sequence is pgmq."q_<queue>_msg_id_seq" (queueSequence), so the probe can be bounded by it. */
  sequenceBound: boolean;
}

/** The sequence of a PGMQ queue's msg_id identity column, as pgmq names it. */
export function queueSequence(queue: string): string {
  return `pgmq."q_${validateQueueName(queue)}_msg_id_seq"`;
}

/**
 * $1 queue. Whether the queue's table is partitioned, and whether its msg_id sequence is the
 * one queueSequence names (pgmq.create_partitioned makes it so); no row for a missing queue.
 */
export const PARTITIONED_QUEUE = `SELECT c.relkind = 'p' AS partitioned,
       pg_get_serial_sequence(format('pgmq.%I', 'q_' || $1::text), 'msg_id') = format('pgmq.%I', 'q_' || $1::text || '_msg_id_seq') AS sequence_bound
  FROM pg_class c WHERE c.oid = to_regclass(format('pgmq.%I', 'q_' || $1::text))`;

/**
 * The parameters of a claim's floors (worker/claim-floors.ts): per priority level (index
 * level + 1), the (vt in microseconds since the epoch, msg_id) below which the level's
 * probe does not look; a null element (or a null array) is no floor.
 */
export interface ClaimFloorParams {
  /** A bigint[] parameter, e.g. "$5". */
  micros: string;
  /** A bigint[] parameter, e.g. "$6". */
  ids: string;
}

/**
 * The join of an UPDATE to the rows `picked` (a CTE of dueRows) locked, by ctid. A ctid is unique only within
 * one table, so the match includes tableoid: on a partitioned queue (pgmq.create_partitioned)
 * two partitions can hold rows at the same ctid. The `ctid = ANY (ARRAY(...))` condition
 * gives each partition a TID scan of the picked ctids: with the join condition alone the
 * planner hash-joins a sequential scan of every partition (measured 8 ms instead of under
 * 1 ms per claim of 50 from a 20k-message partitioned queue); on a plain queue it is the
 * same TID scan.
 */
export function pickedRow(alias: string, picked = "picked", partitioned?: PartitionedClaim): string {
  // On a partitioned queue, the range of the picked ids prunes the partitions none of them is in (see PartitionedClaim).
  const range = partitioned
    ? ` AND ${alias}.msg_id BETWEEN (SELECT min(msg_id) FROM ${picked}) AND (SELECT max(msg_id) FROM ${picked})`
    : "";
  return `${alias}.ctid = ANY (ARRAY(SELECT ctid FROM ${picked}))${range} AND ${alias}.ctid = ${picked}.ctid AND ${alias}.tableoid = ${picked}.tableoid`;
}

export const popOne = (queue: string): NamedStatement =>
  statement(
    "pop",
    queue,
    () =>
      `WITH picked AS (
       SELECT msg_id FROM ${queueTable(queue)} WHERE vt <= clock_timestamp() ORDER BY msg_id LIMIT 1 FOR UPDATE SKIP LOCKED)
     DELETE FROM ${queueTable(queue)} q USING picked WHERE q.msg_id = picked.msg_id
     RETURNING q.${MESSAGE_COLUMNS.split(", ").join(", q.")}`,
  );

/** $1 ids (bigint[]), $2 seconds from now until visible again. */
export const setVisibility = (queue: string): NamedStatement =>
  statement(
    "set_vt",
    queue,
    () =>
      `UPDATE ${queueTable(queue)} SET vt = clock_timestamp() + $2::float8 * interval '1 second'
      WHERE msg_id = ANY($1::bigint[]) RETURNING ${MESSAGE_COLUMNS}`,
  );

/**
 * The worker's claim, which also acks: one round trip deletes (or archives) the messages
 * of finished jobs and claims the next ones. $1 vt seconds, $2 qty, $3 ids to ack (may be
 * empty), $4 the read_ct each was claimed with (see fencedDelete), $5 and $6 the claim's
 * floors (ClaimFloorParams; null: none). Returns only what a
 * worker needs (no timestamps to parse): with each message its priority and its headers
 * (null for most jobs), from which the worker reads a cancel request, the batch and the
 * trace context. The acks here are of jobs outside batches only (a batch job's ack also
 * counts it: ack-sql.ts).
 *
 * The acks run first: the uncorrelated sub-select on `acked` is evaluated once, before the
 * claim's scan locks anything. A row this statement deleted is then seen by FOR UPDATE as
 * modified by the current command and skipped, so a job that outlived its VT is never
 * acked and re-claimed by the same statement. (Excluding the acked ids in the scan's filter
 * does the same, but compares every row scanned with every id: measured 20% slower.)
 *
 * The claim picks due rows in claim order (see dueRows) and returns each one's priority,
 * so the worker can run a batch in that order, and the VT it was due at (due_us), from
 * which the worker sets the next claim's floors. The UPDATE finds the picked rows by ctid,
 * not by msg_id: a TID scan reads the locked tuple's page directly instead of descending
 * the primary key again for every row (see pickedRow). The row lock keeps that tuple
 * current until the statement ends.
 *
 * `partitioned`: the statement of a partitioned queue, same parameters and result, each of
 * its parts bounded by msg_id so that the executor prunes partitions (see PartitionedClaim).
 */
export const claimAndAck = (queue: string, mode: "archive" | "delete", partitioned?: PartitionedClaim): NamedStatement =>
  statement(partitioned ? `claim_part${partitioned.sequenceBound ? "" : "_nobound"}_${mode}` : `claim_${mode}`, queue, () => {
    return `WITH ${ackCtes(queue, mode, 3, false, partitioned)},
     picked AS (${dueRows(
       queue,
       "$2",
       `(SELECT count(*) FROM acked) >= 0 AND ${notPaused(queue)}`,
       { micros: "$5::bigint[]", ids: "$6::bigint[]" },
       partitioned,
     )})
     ${claimPicked(queue, "", partitioned)}, picked.due_us`;
  });

/**
 * The step that closes a claim statement: the rows of CTE `picked` (ctid, tableoid,
 * priority; see dueRows) get their VT ($1 seconds) and read_ct, and come back as a
 * ClaimedRow (worker/worker-store.ts). `condition` narrows the rows updated further; the
 * caller may append more RETURNING columns.
 */
export function claimPicked(queue: string, condition = "", partitioned?: PartitionedClaim): string {
  return `UPDATE ${queueTable(queue)} q
        SET vt = clock_timestamp() + $1::float8 * interval '1 second', read_ct = q.read_ct + 1, last_read_at = clock_timestamp()
       FROM picked WHERE ${pickedRow("q", "picked", partitioned)}${condition}
     RETURNING q.msg_id, q.read_ct, q.message, q.headers, picked.priority`;
}

/**
 * The CTEs that ack (delete, or move to the archive) the fenced claims given as $first and
 * $first+1, ending in `acked` (with msg_id, and headers when `withHeaders`). No trailing comma.
 */
export function ackCtes(
  queue: string,
  mode: "archive" | "delete",
  first: number,
  withHeaders = false,
  partitioned?: PartitionedClaim,
): string {
  return mode === "archive"
    ? `acked AS (${fencedDelete(queue, first, partitioned)} RETURNING ${prefixed("q", MESSAGE_COLUMNS)}),
     archived AS (INSERT INTO ${archiveTable(queue)} (${MESSAGE_COLUMNS}) SELECT ${MESSAGE_COLUMNS} FROM acked)`
    : `acked AS (${fencedDelete(queue, first, partitioned)} RETURNING q.msg_id${withHeaders ? ", q.headers" : ""})`;
}

/**
 * True unless the queue is paused (pgbus.queue_states): an uncorrelated sub-select, so it
 * is evaluated once per claim statement, not per row. The name is a validated queue name.
 */
export function notPaused(queue: string): string {
  return `NOT EXISTS (SELECT 1 FROM pgbus.queue_states s WHERE s.queue_name = '${queue}' AND s.paused)`;
}

/** Every column prefixed with a table alias. */
export function prefixed(alias: string, columns: string): string {
  return columns
    .split(", ")
    .map((column) => `${alias}.${column}`)
    .join(", ");
}

/**
 * The fence of every outcome statement the worker sends: a message is touched only if it
 * still carries the read_ct it was claimed with. A claim bumps read_ct, so once a worker's
 * claim lapsed and another worker claimed the message, the first one's ack, retry,
 * dead-letter, extension or release matches nothing and changes nothing.
 * $n ids (bigint[]), $n+1 their read_cts (int[]), pairwise. On a partitioned queue the
 * ids also bound the scan (their range, and `msg_id = ANY`): the join alone may be planned
 * as a hash join over a sequential scan of every partition (see PartitionedClaim).
 */
export function fencedDelete(queue: string, first: number, partitioned?: PartitionedClaim): string {
  const ids = `$${first}::bigint[]`;
  const byId = partitioned
    ? `q.msg_id = ANY (${ids}) AND q.msg_id BETWEEN (SELECT min(id) FROM unnest(${ids}) AS a(id)) AND (SELECT max(id) FROM unnest(${ids}) AS a(id)) AND `
    : "";
  return `DELETE FROM ${queueTable(queue)} q USING unnest($${first}::bigint[], $${first + 1}::int[]) AS c(id, read_ct)
      WHERE ${byId}q.msg_id = c.id AND q.read_ct = c.read_ct`;
}

/** $1 ids, $2 read_cts. The worker's ack in archive mode, fenced; returns the ids archived. `partitioned`: see fencedDelete. */
export const archiveClaimed = (queue: string, partitioned?: PartitionedClaim): NamedStatement =>
  statement(
    partitioned ? "archive_claimed_part" : "archive_claimed",
    queue,
    () =>
      `WITH moved AS (${fencedDelete(queue, 1, partitioned)} RETURNING ${prefixed("q", MESSAGE_COLUMNS)})
     INSERT INTO ${archiveTable(queue)} (${MESSAGE_COLUMNS}) SELECT ${MESSAGE_COLUMNS} FROM moved
     RETURNING msg_id`,
  );

/** $1 ids, $2 read_cts. The worker's ack in delete mode, fenced; returns the ids deleted. `partitioned`: see fencedDelete. */
export const deleteClaimed = (queue: string, partitioned?: PartitionedClaim): NamedStatement =>
  statement(
    partitioned ? "delete_claimed_part" : "delete_claimed",
    queue,
    () => `${fencedDelete(queue, 1, partitioned)} RETURNING q.msg_id`,
  );

/**
 * $1 ids, $2 read_cts, $3 1 for messages that never started (prefetched, then given back:
 * their claim is undone so it does not count as an attempt), 0 for runs given up (they
 * count). Visible again at once; fenced. Returns the ids released. Idle workers are told
 * as on an insert (NOTIFY pgbus_queue with the queue's name; PostgreSQL sends one per
 * transaction however many rows call it), rather than finding them at their backstop poll.
 */
export const releaseClaimed = (queue: string): NamedStatement =>
  statement(
    "release_claimed",
    queue,
    () =>
      `UPDATE ${queueTable(queue)} q SET vt = clock_timestamp(), read_ct = q.read_ct - $3::int
       FROM unnest($1::bigint[], $2::int[]) AS c(id, read_ct)
      WHERE q.msg_id = c.id AND q.read_ct = c.read_ct
     RETURNING q.msg_id, pg_notify('pgbus_queue', '${queue}')`,
  );

/** $1 ids. Moves rows to the archive table in one statement; returns the ids moved. */
export const archiveMany = (queue: string): NamedStatement =>
  statement(
    "archive",
    queue,
    () =>
      `WITH moved AS (DELETE FROM ${queueTable(queue)} WHERE msg_id = ANY($1::bigint[]) RETURNING ${MESSAGE_COLUMNS})
     INSERT INTO ${archiveTable(queue)} (${MESSAGE_COLUMNS}) SELECT ${MESSAGE_COLUMNS} FROM moved
     RETURNING msg_id`,
  );

/** $1 ids. */
export const deleteMany = (queue: string): NamedStatement =>
  statement("delete", queue, () => `DELETE FROM ${queueTable(queue)} WHERE msg_id = ANY($1::bigint[]) RETURNING msg_id`);

/**
 * $1 id, $2 headers to merge (holding the error header), $3 queue name, $4 the read_ct it was
 * claimed with (null: any; the worker always fences, see fencedDelete). Deletes from the queue, inserts into
 * the DLQ, records the failure and counts a batch job as dead, all in one statement, so the
 * message is in exactly one of the two queues whatever happens.
 */
export const moveToDeadLetter = (queue: string, dlq: string): NamedStatement =>
  statement(
    "dead_letter",
    queue,
    () =>
      `WITH moved AS (DELETE FROM ${queueTable(queue)} WHERE msg_id = $1::bigint AND ($4::int IS NULL OR read_ct = $4::int) RETURNING msg_id, message, headers, read_ct),
     dead AS (
       INSERT INTO ${queueTable(dlq)} (vt, message, headers)
       SELECT clock_timestamp(), message, coalesce(headers, '{}'::jsonb) || $2::jsonb || jsonb_build_object('${DEAD_LETTER_HEADER.readCount}', read_ct) FROM moved
       RETURNING msg_id),
     recorded AS (
       INSERT INTO pgbus.failed_jobs (queue_name, msg_id, job, attempt, error, outcome)
       SELECT $3::text, msg_id, message ->> 'job', read_ct, $2::jsonb -> '${DEAD_LETTER_HEADER.error}', 'dead' FROM moved),
     progress AS (${batchProgress(perBatch("moved", "dead"))})
     SELECT msg_id FROM dead`,
  );

/**
 * $1 id, $2 delay ms until the retry, $3 error record, $4 queue name, $5 the read_ct it was
 * claimed with (fenced, see fencedDelete). Reschedules the message and records the failure.
 */
export const retryLater = (queue: string): NamedStatement =>
  statement(
    "retry",
    queue,
    () =>
      `WITH retried AS (
       UPDATE ${queueTable(queue)} SET vt = clock_timestamp() + $2::float8 * interval '1 millisecond'
        WHERE msg_id = $1::bigint AND read_ct = $5::int RETURNING msg_id, message ->> 'job' AS job, read_ct)
     INSERT INTO pgbus.failed_jobs (queue_name, msg_id, job, attempt, error, outcome)
     SELECT $4::text, msg_id, job, read_ct, $3::jsonb, 'retried' FROM retried
     RETURNING msg_id`,
  );

/**
 * Extends the visibility of every in-flight message of a worker in one statement: one
 * CTE per queue, fenced (see fencedDelete). $1 seconds; then per queue, in the order
 * given, its ids (bigint[]) and their read_cts (int[]). Returns how many it extended.
 */
export function extendVisibility(queues: readonly string[]): NamedStatement {
  return statement("extend", queues.join(","), () => {
    const parts = queues.map(
      (queue, index) =>
        `e${index} AS (UPDATE ${queueTable(queue)} q SET vt = clock_timestamp() + $1::float8 * interval '1 second'
           FROM unnest($${2 * index + 2}::bigint[], $${2 * index + 3}::int[]) AS c(id, read_ct)
          WHERE q.msg_id = c.id AND q.read_ct = c.read_ct RETURNING 1)`,
    );
    return `WITH ${parts.join(",\n")} SELECT ${queues.map((_, index) => `(SELECT count(*) FROM e${index})`).join(" + ")} AS extended`;
  });
}

export const metrics = (queue: string): NamedStatement =>
  statement(
    "metrics",
    queue,
    () =>
      `SELECT count(*) AS queue_length,
            count(*) FILTER (WHERE vt <= clock_timestamp()) AS queue_visible_length,
            extract(epoch FROM now() - max(enqueued_at))::int AS newest_msg_age_sec,
            extract(epoch FROM now() - min(enqueued_at))::int AS oldest_msg_age_sec,
            (SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END FROM pgmq."q_${queue}_msg_id_seq" s) AS total_messages,
            now() AS scrape_time
       FROM ${queueTable(queue)}`,
  );

export const purge = (queue: string): NamedStatement =>
  statement(
    "purge",
    queue,
    () => `WITH removed AS (DELETE FROM ${queueTable(queue)} RETURNING 1) SELECT count(*)::int AS count FROM removed`,
  );

export const CREATE_UNLOGGED_QUEUE = "SELECT pgmq.create_unlogged($1)";
/** $2 partition interval, $3 retention (pg_partman's units: msg ids as digits, or a time interval). */
export const CREATE_PARTITIONED_QUEUE = "SELECT pgmq.create_partitioned($1, $2, $3)";
/** PGMQ's FIFO reads: $1 vt seconds, $2 qty. See pgmq.read_grouped in the pgmq/0003 migration. */
export const readGrouped = (roundRobin: boolean): string =>
  `SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers FROM pgmq.${roundRobin ? "read_grouped_rr" : "read_grouped"}($1, $2::int, $3::int)`;
/** $1 queue, $2 with its DLQ. The whole queue in one statement, under the queue's lock (migration pgbus/0006). */
export const ENSURE_QUEUE = "SELECT pgbus.ensure_queue($1::text, $2::boolean)";
/** $1 queue, $2 with its DLQ. Both in one statement, under the same locks as ENSURE_QUEUE. */
export const DROP_QUEUE = "SELECT pgbus.drop_queue($1::text, $2::boolean) AS dropped";
export const LIST_QUEUES = "SELECT queue_name, created_at FROM pgmq.meta ORDER BY queue_name";
export const QUEUE_EXISTS = "SELECT 1 FROM pgmq.meta WHERE queue_name = $1";
/** Queues a wildcard worker serves: no DLQs, no event-subscriber queues. */
export const JOB_QUEUES = "SELECT job_queues AS queue_name FROM pgbus.job_queues()";

/** $1 queue names (text[]). The worker's backstop poll, one statement for all its queues (migration pgbus/0017). */
export const QUEUES_WITH_WORK = "SELECT queue_name, missing FROM pgbus.queues_with_work($1::text[])";

/** The per-queue statement cache, shared with the other sql modules (events/sql.ts) so statement names stay unique. */
export const namedStatement = statement;

/** The columns of a queue row, for statements in other sql modules that archive or return messages. */
export { MESSAGE_COLUMNS };
