import type { ErrorRecord } from "../errors.ts";
import { type Queryable, runStatement } from "../db/queryable.ts";
import { QueueClient, type QueueMessage } from "../queue/client.ts";
import * as sql from "../queue/sql.ts";

export const ACK_MODES = ["archive", "delete"] as const;
export type AckMode = (typeof ACK_MODES)[number];

/**
 * The worker's only way to the database: noun-verb operations, each one statement. The
 * worker loop holds no SQL, so batching and prefetch can change behind this seam.
 */
export interface WorkerStore {
  claim(queue: string, vtSeconds: number, qty: number): Promise<QueueMessage[]>;
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
    claim: (queue, vtSeconds, qty) => queues.read(queue, vtSeconds, qty),
    async ack(queue, ids, mode) {
      if (mode === "archive") await queues.archive(queue, ids);
      else await queues.delete(queue, ids);
    },
    async retry(queue, id, delayMs, error) {
      await run(sql.retryLater(queue), [id, delayMs, JSON.stringify(error), queue]);
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
