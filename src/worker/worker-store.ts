import type { ErrorRecord } from "../errors.ts";
import { type Queryable, runStatement } from "../db/queryable.ts";
import { missingQueueOf } from "../db/pg-errors.ts";
import { QueueClient, byClaimOrder } from "../queue/client.ts";
import { errorRecordJson } from "../queue/payload.ts";
import { cancelClaimed, cancelRequested } from "../queue/cancel-sql.ts";
import * as sql from "../queue/sql.ts";
import { CANCEL_HEADER } from "../queue/cancel-headers.ts";
import { BATCH_HEADER } from "../queue/batches-sql.ts";
import { ackWithEffects } from "../queue/ack-sql.ts";
import { OPENED_BY, claimWithBreaker } from "../queue/breaker-sql.ts";
import { type ResolvedCircuitBreaker, configureCircuitBreaker } from "../queue/breaker.ts";
import type { AckMode, RoutedMessage } from "./options.ts";
import { ClaimFloors, type FloorRow } from "./claim-floors.ts";

export type { AckMode };

/** A claimed message: what the worker needs to run it. */
export interface ClaimedMessage {
  msgId: string;
  readCt: number;
  message: unknown;
  /** Its cancel was requested (bus.cancel) while it was claimed before: settled as cancelled, never run. */
  cancelRequested?: boolean;
  /** The batch the job belongs to (header `pgbus_batch`): its ack also counts it (ackBatchJobs). */
  batchId?: string;
  /** The one job a half-open circuit breaker lets through (queue/breaker.ts). */
  probe?: boolean;
  /** The message headers (a trace context among them); null when it has none. */
  headers?: Record<string, unknown> | null;
  /**
   * Which job it is for, once routed (the flow-limit gate routes a limited queue's messages
   * before they run): the run takes it from here rather than calling routeMessage again.
   */
  routed?: RoutedMessage | null;
}

/**
 * One claim of one message: its id and the read_ct the claim gave it. Every outcome
 * statement is fenced by it, so the outcome of a claim that lapsed (its worker froze past
 * the VT and another worker claimed the message) changes nothing.
 */
export interface Claim {
  id: string;
  readCt: number;
}

/** Messages of finished jobs to ack in the same round trip as a claim. */
export interface PiggybackAck {
  claims: Claim[];
  mode: AckMode;
}

/**
 * The worker's only way to the database: noun-verb operations, each one statement. The
 * worker loop holds no SQL, so batching and prefetch can change behind this seam. Each
 * outcome returns what it changed: less than asked means ownership was lost.
 */
export interface WorkerStore {
  /** Claims up to `qty` due messages, in claim order (priority, then oldest VT: docs/jobs.md), after acking `acks` (when given) in the same statement. */
  claim(queue: string, vtSeconds: number, qty: number, acks?: PiggybackAck): Promise<ClaimedMessage[]>;
  /** Archive or delete many messages of one queue in one statement; returns how many. */
  ack(queue: string, claims: Claim[], mode: AckMode): Promise<number>;
  /** The same for jobs of batches, counting each as succeeded in its batch in the same statement. */
  ackBatchJobs(queue: string, claims: Claim[], mode: AckMode): Promise<number>;
  retry(queue: string, claim: Claim, delayMs: number, error: ErrorRecord): Promise<boolean>;
  deadLetter(queue: string, claim: Claim, error: ErrorRecord & { reason: string }): Promise<boolean>;
  /** Pushes the VT of every in-flight message out by `vtSeconds`, all queues in one statement; returns how many. */
  extend(inFlight: ReadonlyMap<string, Claim[]>, vtSeconds: number): Promise<number>;
  /**
   * Makes messages visible again at once. `started: false` (prefetched, never run) also
   * undoes the claim's read_ct increment, so giving a message back is not an attempt.
   */
  release(queue: string, claims: Claim[], options: { started: boolean }): Promise<number>;
  /**
   * Archives as cancelled the claimed messages whose cancel was requested (the request is
   * on the message: the database decides, not the caller); returns how many.
   */
  cancel(queue: string, claims: Claim[]): Promise<number>;
  /** Which of these in-flight messages have a cancel requested: one statement for all queues. */
  cancelRequested(inFlight: ReadonlyMap<string, Claim[]>): Promise<Array<{ queue: string; messageId: string }>>;
  /** The breaker's back-off and count if the failed run of `claim` opened the queue's circuit breaker; null otherwise (and without a query on a queue without one). */
  breakerOpenedBy(queue: string, claim: Claim): Promise<{ backoffMs: number; consecutiveFailures: number } | null>;
  /** Queues a wildcard worker serves: not DLQs, not event-subscriber queues. */
  listQueues(): Promise<string[]>;
  /**
   * The backstop poll: which of `queues` have a message to claim now (or are gone:
   * `missing`), all in one statement. Optional: without it a worker claims from every queue.
   */
  queuesWithWork?(queues: readonly string[]): Promise<Array<{ queue: string; missing: boolean }>>;
  ensureQueue(queue: string): Promise<void>;
}

/** The two arrays a fenced statement takes: ids and the read_ct each was claimed with. */
export function claimArrays(claims: readonly Claim[]): [string[], number[]] {
  return [claims.map((claim) => claim.id), claims.map((claim) => claim.readCt)];
}

/** A row a claim statement returns (queue/sql.ts claimPicked). */
export interface ClaimedRow {
  msg_id: string;
  read_ct: number;
  message: unknown;
  headers: Record<string, unknown> | null;
  priority: number;
  /** Only from the claim of a queue with a circuit breaker. */
  probe?: boolean;
}

function claimedMessage(row: ClaimedRow): ClaimedMessage {
  const message: ClaimedMessage = { msgId: row.msg_id, readCt: row.read_ct, message: row.message, headers: row.headers };
  if (row.headers) {
    if (CANCEL_HEADER.requested in row.headers) message.cancelRequested = true;
    const batchId = row.headers[BATCH_HEADER];
    if (typeof batchId === "string") message.batchId = batchId;
  }
  if (row.probe) message.probe = true;
  return message;
}

/** A claim statement's rows as the worker takes them, in claim order: a batch that spans priorities runs (and prefetches) its best first. */
export function claimedMessages(rows: readonly ClaimedRow[]): ClaimedMessage[] {
  return rows
    .map((row) => ({ priority: row.priority, msgId: row.msg_id, claimed: claimedMessage(row) }))
    .sort(byClaimOrder)
    .map((entry) => entry.claimed);
}

export interface WorkerStoreOptions {
  /** The circuit breaker of `queue`, if it has one: its claims and acks take the breaker's statements. */
  breakerFor?: (queue: string) => ResolvedCircuitBreaker | undefined;
}

/**
 * Runs a statement over the in-flight messages of several queues (undefined when there are
 * none). A queue dropped under its in-flight messages fails the whole statement with its
 * table missing: it is left out and the statement runs again for the others, whose VTs
 * must still be extended (its own messages went with it; their outcomes report that).
 */
async function skippingDroppedQueues<R>(
  inFlight: ReadonlyMap<string, Claim[]>,
  statement: (queues: string[]) => Promise<R>,
): Promise<R | undefined> {
  const queues = [...inFlight.keys()];
  while (queues.length > 0) {
    try {
      return await statement(queues);
    } catch (error) {
      const dropped = queues.indexOf(missingQueueOf(error) ?? "");
      if (dropped < 0) throw error;
      queues.splice(dropped, 1);
    }
  }
  return undefined;
}

export function createWorkerStore(db: Queryable, options: WorkerStoreOptions = {}): WorkerStore {
  const queues = new QueueClient(db, { prepared: true });
  const breakerFor = options.breakerFor ?? (() => undefined);
  const hasBreaker = (queue: string): boolean => breakerFor(queue) !== undefined;
  /** Queues whose breaker settings this store has written (once, before its first claim there). */
  const configured = new Set<string>();
  const floors = new ClaimFloors();
  const run = <R>(statement: { name: string; text: string }, values: unknown[]) => runStatement<R>(db, true, statement, values);
  /**
   * Per queue, the shape of its claim statement: a partitioned queue's bounds each part of
   * the claim by msg_id so that the executor skips the partitions none of its rows can be in
   * (sql.ts PartitionedClaim); null for any other queue. Asked once per queue, before its
   * first claim, and asked again after a claim fails (the queue may have been dropped and made again).
   */
  const claimShapes = new Map<string, sql.PartitionedClaim | null>();
  const claimShape = async (queue: string): Promise<sql.PartitionedClaim | null> => {
    let shape = claimShapes.get(queue);
    if (shape === undefined) {
      const [row] = await run<{ partitioned: boolean; sequence_bound: boolean | null }>(
        { name: "pgbus_partitioned_queue", text: sql.PARTITIONED_QUEUE },
        [queue],
      );
      // A missing queue is not remembered: the claim reports it, and the queue may be made before the next one.
      if (!row) return null;
      shape = row.partitioned ? { sequenceBound: row.sequence_bound === true } : null;
      claimShapes.set(queue, shape);
    }
    return shape;
  };
  const ack = async (queue: string, claims: Claim[], mode: AckMode): Promise<number> => {
    // A queue's acks follow its claims, so its claim shape is known by now (none: a plain ack).
    const partitioned = claimShapes.get(queue) ?? undefined;
    const statement = hasBreaker(queue)
      ? ackWithEffects(queue, mode, { batch: false, breaker: true })
      : mode === "archive"
        ? sql.archiveClaimed(queue, partitioned)
        : sql.deleteClaimed(queue, partitioned);
    return (await run(statement, claimArrays(claims))).length;
  };
  return {
    async claim(queue, vtSeconds, qty, acks) {
      let rows: ClaimedRow[];
      const breaker = breakerFor(queue);
      if (breaker) {
        if (!configured.has(queue)) {
          await configureCircuitBreaker(db, queue, breaker);
          configured.add(queue);
        }
        // The breaker's acks also reset it: their own statement first, as the claim cannot carry them.
        if (acks && acks.claims.length > 0) await ack(queue, acks.claims, acks.mode);
        rows = await run<ClaimedRow>(claimWithBreaker(queue), [vtSeconds, qty]);
      } else {
        const floorParams = floors.next(queue);
        try {
          // Known after the first claim of the queue: no await on the hot path.
          const shape = claimShapes.has(queue) ? claimShapes.get(queue) : await claimShape(queue);
          const statement = sql.claimAndAck(queue, acks?.mode ?? "delete", shape ?? undefined);
          const claimFrom = (params: unknown[], wanted: number, claims: Claim[]) =>
            run<ClaimedRow & FloorRow>(statement, [vtSeconds, wanted, ...claimArrays(claims), ...params]);
          rows = await claimFrom(floorParams, qty, acks?.claims ?? []);
          // Short from the floors: a message due below one (see claim-floors.ts) would wait for
          // the next notification or poll, so look again from the start of every level, once.
          if (rows.length < qty && floorParams[0] !== null) rows.push(...(await claimFrom([null, null], qty - rows.length, [])));
        } catch (error) {
          floors.forget(queue);
          claimShapes.delete(queue);
          throw error;
        }
        floors.claimed(queue, qty, rows as Array<ClaimedRow & FloorRow>);
      }
      return claimedMessages(rows);
    },
    ack,
    async ackBatchJobs(queue, claims, mode) {
      return (await run(ackWithEffects(queue, mode, { batch: true, breaker: hasBreaker(queue) }), claimArrays(claims))).length;
    },
    async breakerOpenedBy(queue, claim) {
      if (!hasBreaker(queue)) return null;
      const [row] = await run<{ breaker_backoff_ms: number; consecutive_failures: number }>(
        { name: "pgbus_breaker_opened_by", text: OPENED_BY },
        [queue, claim.id, claim.readCt],
      );
      return row ? { backoffMs: row.breaker_backoff_ms, consecutiveFailures: row.consecutive_failures } : null;
    },
    async retry(queue, claim, delayMs, error) {
      return (await run(sql.retryLater(queue), [claim.id, delayMs, errorRecordJson(error), queue, claim.readCt])).length > 0;
    },
    async deadLetter(queue, claim, error) {
      return (await queues.moveToDeadLetterQueue(queue, claim.id, error, claim.readCt)) !== null;
    },
    extend: (inFlight, vtSeconds) =>
      skippingDroppedQueues(inFlight, async (names) => {
        const values = names.flatMap((name) => claimArrays(inFlight.get(name) ?? []));
        const [row] = await run<{ extended: string }>(sql.extendVisibility(names), [vtSeconds, ...values]);
        return Number(row?.extended ?? 0);
      }).then((extended) => extended ?? 0),
    async release(queue, claims, { started }) {
      return (await run(sql.releaseClaimed(queue), [...claimArrays(claims), started ? 0 : 1])).length;
    },
    async cancel(queue, claims) {
      return (await run(cancelClaimed(queue), claimArrays(claims))).length;
    },
    cancelRequested: (inFlight) =>
      skippingDroppedQueues(inFlight, async (names) => {
        const values = names.map((name) => (inFlight.get(name) ?? []).map((claim) => claim.id));
        const rows = await run<{ queue: string; msg_id: string }>(cancelRequested(names), values);
        return rows.map((row) => ({ queue: row.queue, messageId: row.msg_id }));
      }).then((requested) => requested ?? []),
    async listQueues() {
      return (await run<{ queue_name: string }>({ name: "pgbus_job_queues", text: sql.JOB_QUEUES }, [])).map((row) => row.queue_name);
    },
    async queuesWithWork(names) {
      if (names.length === 0) return [];
      const rows = await run<{ queue_name: string; missing: boolean }>({ name: "pgbus_queues_with_work", text: sql.QUEUES_WITH_WORK }, [
        names,
      ]);
      return rows.map((row) => ({ queue: row.queue_name, missing: row.missing }));
    },
    ensureQueue: (queue) => queues.createQueue(queue),
  };
}
