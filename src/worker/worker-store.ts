import type { ErrorRecord } from "../errors.ts";
import { type Queryable, runStatement } from "../db/queryable.ts";
import { QueueClient, byMessageId } from "../queue/client.ts";
import { errorRecordJson } from "../queue/payload.ts";
import * as sql from "../queue/sql.ts";
import type { AckMode } from "./options.ts";

export type { AckMode };

/**
 * The worker's only way to the database: noun-verb operations, each one statement. The
 * worker loop holds no SQL, so batching and prefetch can change behind this seam.
 */
/** A claimed message: what the worker needs to run it. */
export interface ClaimedMessage {
  msgId: string;
  readCt: number;
  message: unknown;
}

/** Messages of finished jobs to ack in the same round trip as a claim. */
export interface PiggybackAck {
  ids: string[];
  mode: AckMode;
}

export interface WorkerStore {
  /** Claims up to `qty` visible messages, oldest first, after acking `acks` (when given) in the same statement. */
  claim(queue: string, vtSeconds: number, qty: number, acks?: PiggybackAck): Promise<ClaimedMessage[]>;
  /** Archive or delete many messages of one queue in one statement. */
  ack(queue: string, ids: string[], mode: AckMode): Promise<void>;
  retry(queue: string, id: string, delayMs: number, error: ErrorRecord): Promise<void>;
  deadLetter(queue: string, id: string, error: ErrorRecord & { reason: string }): Promise<void>;
  /** Pushes the VT of every in-flight message out by `vtSeconds`, all queues in one statement. */
  extend(inFlight: ReadonlyMap<string, string[]>, vtSeconds: number): Promise<void>;
  /** Makes messages visible again at once (runs abandoned at shutdown). */
  release(queue: string, ids: string[]): Promise<void>;
  /** Queues a wildcard worker serves: not DLQs, not event-subscriber queues. */
  listQueues(): Promise<string[]>;
  ensureQueue(queue: string): Promise<void>;
}

export function createWorkerStore(db: Queryable): WorkerStore {
  const queues = new QueueClient(db, { prepared: true });
  const run = <R>(statement: { name: string; text: string }, values: unknown[]) => runStatement<R>(db, true, statement, values);
  return {
    async claim(queue, vtSeconds, qty, acks) {
      const rows = await run<{ msg_id: string; read_ct: number; message: unknown }>(sql.claimAndAck(queue, acks?.mode ?? "delete"), [
        vtSeconds,
        qty,
        acks?.ids ?? [],
      ]);
      return rows.map((row) => ({ msgId: row.msg_id, readCt: row.read_ct, message: row.message })).sort(byMessageId);
    },
    async ack(queue, ids, mode) {
      if (mode === "archive") await queues.archive(queue, ids);
      else await queues.delete(queue, ids);
    },
    async retry(queue, id, delayMs, error) {
      await run(sql.retryLater(queue), [id, delayMs, errorRecordJson(error), queue]);
    },
    async deadLetter(queue, id, error) {
      await queues.moveToDeadLetterQueue(queue, id, error);
    },
    async extend(inFlight, vtSeconds) {
      const names = [...inFlight.keys()];
      if (names.length === 0) return;
      await run(sql.extendVisibility(names), [vtSeconds, ...names.map((name) => inFlight.get(name))]);
    },
    async release(queue, ids) {
      await queues.setVtMany(queue, ids, 0);
    },
    async listQueues() {
      return (await run<{ queue_name: string }>({ name: "pgbus_job_queues", text: sql.JOB_QUEUES }, [])).map((row) => row.queue_name);
    },
    ensureQueue: (queue) => queues.createQueue(queue),
  };
}
