import { type TransactionalQueryable, runStatement, withTransaction } from "../db/queryable.ts";
import { FIFO_CLAIM_LOCK, claimGroupHeadsAndAck } from "../queue/fifo-sql.ts";
import { type ClaimedRow, type WorkerStore, claimArrays, claimedMessages } from "./worker-store.ts";

export interface FifoClaimOptions {
  /** The worker's pool: a FIFO claim takes one connection for its short transaction. */
  pool: TransactionalQueryable;
  /** Whether a queue is claimed by FIFO group (worker option `fifo`). */
  fifoFor: (queue: string) => boolean;
  /**
   * A message of a FIFO queue was acked, dead-lettered or given back: the group it held
   * may be claimable now, so the worker should claim again instead of waiting for its poll.
   */
  onGroupOpened: (queue: string) => void;
}

/**
 * The worker store with FIFO claims for the queues `fifoFor` names: one message per group at
 * a time, in msg_id order, across every worker process (queue/fifo-sql.ts says how). Other
 * queues, and every other operation, go to `store` unchanged.
 */
export function withFifoClaims(store: WorkerStore, options: FifoClaimOptions): WorkerStore {
  const { pool, fifoFor, onGroupOpened } = options;
  const opening = async <T>(queue: string, outcome: Promise<T>): Promise<T> => {
    const result = await outcome;
    if (fifoFor(queue)) onGroupOpened(queue);
    return result;
  };
  return {
    ...store,
    async claim(queue, vtSeconds, qty, acks) {
      if (!fifoFor(queue)) return store.claim(queue, vtSeconds, qty, acks);
      const rows = await withTransaction(pool, async (client) => {
        await client.query({ name: "pgbus_fifo_claim_lock", text: FIFO_CLAIM_LOCK, values: [queue] });
        const statement = claimGroupHeadsAndAck(queue, acks?.mode ?? "delete");
        return runStatement<ClaimedRow>(client, true, statement, [vtSeconds, qty, ...claimArrays(acks?.claims ?? [])]);
      });
      return claimedMessages(rows);
    },
    ack: (queue, claims, mode) => opening(queue, store.ack(queue, claims, mode)),
    deadLetter: (queue, claim, error) => opening(queue, store.deadLetter(queue, claim, error)),
    release: (queue, claims, how) => opening(queue, store.release(queue, claims, how)),
  };
}
