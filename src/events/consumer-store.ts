import type pg from "pg";
import { type Queryable, runStatement, withTransaction } from "../db/queryable.ts";
import { type WorkerStore, claimArrays, createWorkerStore } from "../worker/worker-store.ts";
import { type MessageRow, QueueClient, byMessageId, toMessage } from "../queue/client.ts";
import {
  archiveMarkingHandled,
  claimSkippingHandled,
  deleteMarkingHandled,
  ENSURE_SUBSCRIPTION,
  LOCK_QUEUE,
  UNBIND_OTHER_PATTERNS,
} from "./sql.ts";
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
      if (acks && acks.claims.length > 0) await this.ack(queue, acks.claims, acks.mode);
      const rows = await run<MessageRow>(claimSkippingHandled(queue), [vtSeconds, qty, subscriber]);
      return rows.map((row) => toMessage(row)).sort(byMessageId);
    },
    async ack(queue, claims, mode) {
      const subscriber = idempotent.get(queue);
      if (subscriber === undefined) return base.ack(queue, claims, mode);
      const rows = await run(mode === "archive" ? archiveMarkingHandled(queue) : deleteMarkingHandled(queue), [
        ...claimArrays(claims),
        subscriber,
      ]);
      return rows.length;
    },
  };
}

/** A binding that setup removed: the subscriber's pattern changed. */
export interface RemovedBinding {
  subscriber: string;
  queue: string;
  pattern: string;
}

/**
 * Creates each subscriber's queue (and DLQ) and reconciles its bindings: the subscriber's
 * pattern is bound to its queue, and any other pattern bound to that queue (an older
 * pattern of the subscriber) is removed, so a narrowed pattern stops delivering what it
 * no longer matches. Idempotent and cheap when everything is in place, so consumers run it
 * on every start. Each subscriber's setup is one transaction under its queue's lock (the
 * one queue creation and drop take, migration pgbus/0006): a publish sees the queue's old
 * bindings or its new ones, never the queue without one, and a wildcard ("*") worker, which lists the
 * queues without a binding as job queues, never sees a subscriber's queue in the moment
 * before it is bound.
 * Returns the bindings it removed.
 */
export async function ensureSubscriptions(pool: pg.Pool, subscribers: Iterable<SubscriberDefinition>): Promise<RemovedBinding[]> {
  const removed: RemovedBinding[] = [];
  // One transaction per subscriber, so at most one queue lock is held at a time: holding
  // several, taken in the order subscribers come, deadlocks with a publish that takes the
  // locks of its target queues in name order (measured: 40P01 under concurrent setup).
  for (const { subscriber } of subscribers) {
    await withTransaction(pool, async (client) => {
      // Queue, DLQ and binding, under the queue's lock, which stays held to the commit.
      await client.query(ENSURE_SUBSCRIPTION, [subscriber.pattern, subscriber.queue]);
      const gone = await client.query(UNBIND_OTHER_PATTERNS, [subscriber.queue, subscriber.pattern]);
      for (const row of gone.rows as Array<{ pattern: string }>) {
        removed.push({ subscriber: subscriber.name, queue: subscriber.queue, pattern: row.pattern });
      }
    });
  }
  return removed;
}

export interface UnsubscribeResult {
  /** The subscriber's queue. */
  queue: string;
  /** Patterns that were bound to it and are no longer. */
  unbound: string[];
  /** True when the queue (and its DLQ) was dropped. */
  droppedQueue: boolean;
}

/**
 * Removes a subscriber that no longer exists in the code: unbinds every pattern from its
 * queue (so publishes stop filling it) and, when asked, drops the queue and its DLQ. One
 * transaction, under the queue's lock.
 */
export async function removeSubscription(pool: pg.Pool, queue: string, dropQueue: boolean): Promise<UnsubscribeResult> {
  return withTransaction(pool, async (client) => {
    await client.query(LOCK_QUEUE, [queue]);
    const gone = await client.query(UNBIND_OTHER_PATTERNS, [queue, null]);
    const unbound = (gone.rows as Array<{ pattern: string }>).map((row) => row.pattern).sort();
    const droppedQueue = dropQueue ? await new QueueClient(client).dropQueue(queue) : false;
    return { queue, unbound, droppedQueue };
  });
}
