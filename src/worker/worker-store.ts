import type { ErrorRecord } from "../errors.ts";
import { type Queryable, runStatement } from "../db/queryable.ts";
import { QueueClient, byMessageId } from "../queue/client.ts";
import { errorRecordJson } from "../queue/payload.ts";
import * as sql from "../queue/sql.ts";
import type { AckMode } from "./options.ts";

export type { AckMode };

/** A claimed message: what the worker needs to run it. */
export interface ClaimedMessage {
  msgId: string;
  readCt: number;
  message: unknown;
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
  /** Claims up to `qty` visible messages, oldest first, after acking `acks` (when given) in the same statement. */
  claim(queue: string, vtSeconds: number, qty: number, acks?: PiggybackAck): Promise<ClaimedMessage[]>;
  /** Archive or delete many messages of one queue in one statement; returns how many. */
  ack(queue: string, claims: Claim[], mode: AckMode): Promise<number>;
  retry(queue: string, claim: Claim, delayMs: number, error: ErrorRecord): Promise<boolean>;
  deadLetter(queue: string, claim: Claim, error: ErrorRecord & { reason: string }): Promise<boolean>;
  /** Pushes the VT of every in-flight message out by `vtSeconds`, all queues in one statement; returns how many. */
  extend(inFlight: ReadonlyMap<string, Claim[]>, vtSeconds: number): Promise<number>;
  /**
   * Makes messages visible again at once. `started: false` (prefetched, never run) also
   * undoes the claim's read_ct increment, so giving a message back is not an attempt.
   */
  release(queue: string, claims: Claim[], options: { started: boolean }): Promise<number>;
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

export function createWorkerStore(db: Queryable): WorkerStore {
  const queues = new QueueClient(db, { prepared: true });
  const run = <R>(statement: { name: string; text: string }, values: unknown[]) => runStatement<R>(db, true, statement, values);
  return {
    async claim(queue, vtSeconds, qty, acks) {
      const rows = await run<{ msg_id: string; read_ct: number; message: unknown }>(sql.claimAndAck(queue, acks?.mode ?? "delete"), [
        vtSeconds,
        qty,
        ...claimArrays(acks?.claims ?? []),
      ]);
      return rows.map((row) => ({ msgId: row.msg_id, readCt: row.read_ct, message: row.message })).sort(byMessageId);
    },
    async ack(queue, claims, mode) {
      const statement = mode === "archive" ? sql.archiveClaimed(queue) : sql.deleteClaimed(queue);
      return (await run(statement, claimArrays(claims))).length;
    },
    async retry(queue, claim, delayMs, error) {
      return (await run(sql.retryLater(queue), [claim.id, delayMs, errorRecordJson(error), queue, claim.readCt])).length > 0;
    },
    async deadLetter(queue, claim, error) {
      return (await queues.moveToDeadLetterQueue(queue, claim.id, error, claim.readCt)) !== null;
    },
    async extend(inFlight, vtSeconds) {
      const names = [...inFlight.keys()];
      if (names.length === 0) return 0;
      const values = names.flatMap((name) => claimArrays(inFlight.get(name) ?? []));
      const [row] = await run<{ extended: string }>(sql.extendVisibility(names), [vtSeconds, ...values]);
      return Number(row?.extended ?? 0);
    },
    async release(queue, claims, { started }) {
      return (await run(sql.releaseClaimed(queue), [...claimArrays(claims), started ? 0 : 1])).length;
    },
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
