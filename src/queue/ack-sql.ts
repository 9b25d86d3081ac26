import type { NamedStatement } from "../db/queryable.ts";
import { batchProgress, perBatch } from "./batches-sql.ts";
import { breakerSuccess } from "./breaker-sql.ts";
import { ackCtes, namedStatement } from "./sql.ts";

/**
 * The worker's ack when it must do more than ack: $1 ids, $2 read_cts (fenced, see
 * sql.ts fencedDelete); returns the ids acked. `batch`: the acked messages are batch jobs,
 * counted as succeeded in their batches in the same statement. `breaker`: the queue has a
 * circuit breaker, which a success resets (and a probe's success closes). Jobs outside
 * batches on queues without a breaker are acked by the plain statements of sql.ts, which
 * do none of this.
 */
export const ackWithEffects = (queue: string, mode: "archive" | "delete", effects: { batch: boolean; breaker: boolean }): NamedStatement =>
  namedStatement(`ack_${mode}${effects.batch ? "_batch" : ""}${effects.breaker ? "_breaker" : ""}`, queue, () => {
    const ctes = [ackCtes(queue, mode, 1, effects.batch)];
    if (effects.batch) ctes.push(`progress AS (${batchProgress(perBatch("acked", "succeeded"))})`);
    if (effects.breaker) ctes.push(`reset AS (${breakerSuccess(queue)})`);
    return `WITH ${ctes.join(",\n     ")}
     SELECT msg_id FROM acked`;
  });
