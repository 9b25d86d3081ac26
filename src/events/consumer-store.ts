import { type Queryable, runStatement } from "../db/queryable.ts";
import { type WorkerStore, createWorkerStore } from "../worker/worker-store.ts";
import { type MessageRow, byMessageId, toMessage } from "../queue/client.ts";
import { archiveMarkingHandled, claimSkippingHandled, deleteMarkingHandled, ENSURE_SUBSCRIPTION } from "./sql.ts";
import type { SubscriberDefinition } from "./subscriber.ts";

/**
 * The worker store of an event consumer: the jobs' store, except on the queues of
 * idempotent subscribers (`idempotent` maps such a queue to its subscriber's name), where
 * - claim skips copies of events the subscriber already handled, archiving them in the
 *   claim statement itself (skipped, not run, and acked);
 * - ack archives (or deletes) and records the events as handled in one statement.
 * A claim that skipped copies returns fewer messages than asked, so the worker takes its
 * queue for drained until the next notification or poll: duplicates are rare, and a burst
 * of them costs at most a poll interval, never a run.
 */
export function createEventStore(db: Queryable, idempotent: ReadonlyMap<string, string>): WorkerStore {
  const base = createWorkerStore(db);
  const run = <R>(statement: { name: string; text: string }, values: unknown[]) => runStatement<R>(db, true, statement, values);
  return {
    ...base,
    async claim(queue, vtSeconds, qty, acks) {
      const subscriber = idempotent.get(queue);
      if (subscriber === undefined) return base.claim(queue, vtSeconds, qty, acks);
      // Acks here must also mark events handled, so they take their own statement first.
      if (acks && acks.ids.length > 0) await this.ack(queue, acks.ids, acks.mode);
      const rows = await run<MessageRow>(claimSkippingHandled(queue), [vtSeconds, qty, subscriber]);
      return rows.map((row) => toMessage(row)).sort(byMessageId);
    },
    async ack(queue, ids, mode) {
      const subscriber = idempotent.get(queue);
      if (subscriber === undefined) return base.ack(queue, ids, mode);
      await run(mode === "archive" ? archiveMarkingHandled(queue) : deleteMarkingHandled(queue), [ids, subscriber]);
    },
  };
}

/**
 * Creates each subscriber's queue (and DLQ) and binds its pattern to it. Idempotent and
 * cheap when everything exists, so consumers run it on every start. Queue and binding are
 * made in one statement: a wildcard ("*") worker lists the queues without a binding as
 * job queues, and must never see a subscriber's queue in the moment before it is bound.
 */
export async function ensureSubscriptions(db: Queryable, subscribers: Iterable<SubscriberDefinition>): Promise<void> {
  for (const { subscriber } of subscribers) await db.query(ENSURE_SUBSCRIPTION, [subscriber.pattern, subscriber.queue]);
}
