import { ValidationError } from "../errors.ts";
import type { Queryable } from "../db/queryable.ts";
import type { BackoffOptions } from "../jobs/backoff.ts";
import { type JobContext, type JobDefinition, defineJob, isJobDefinition } from "../jobs/define.ts";
import { MAX_QUEUE_NAME_WITH_DLQ, validateQueueName } from "../queue/names.ts";
import { type Event, type EventMessage, fromEventMessage, isEventMessage } from "./event.ts";
import { validateTopicPattern } from "./routing.ts";
import { MARK_HANDLED } from "./sql.ts";

/** What a subscriber's handler receives besides the event. */
export interface EventContext extends JobContext {
  /** The subscriber's name. */
  subscriber: string;
  /**
   * Records, inside the handler's own transaction, that this subscriber handled the event.
   * Returns true the first time; false when it already was (another run committed first):
   * roll back and return. Effects written in that transaction then happen exactly once,
   * even when a worker dies between the handler's commit and the ack. Without it an
   * idempotent subscriber still skips events whose run was acked, but a crash between a
   * handler's success and its ack runs the handler again (at-least-once).
   */
  markHandled(client: Queryable): Promise<boolean>;
}

export type EventHandler<P = unknown> = (event: Event<P>, ctx: EventContext) => Promise<void> | void;

export interface SubscriberOptions {
  /** Unique: 1-40 characters of a-z, 0-9 and "_". Names the queue, the job and the idempotency records. */
  name: string;
  /** Topic pattern: `*` matches one segment, `#` zero or more (`orders.*`, `orders.#`, `#`). */
  pattern: string;
  /** The subscriber's own queue. Default `ev_<name>`. Two subscribers never share one. */
  queue?: string;
  /**
   * Record each handled event id (in the ack statement) and skip copies of events already
   * handled. Default false. Records expire with the maintenance's processed-events retention.
   */
  idempotent?: boolean;
  /** Retries after the first failed run; then the copy moves to `<queue>_dlq`. Default 5. */
  maxRetries?: number;
  backoff?: BackoffOptions;
  /** Abort the run (ctx.signal) and count a failure after this long. Default: none. */
  timeoutMs?: number;
}

export interface SubscriberDefinitionOptions<P = unknown> extends SubscriberOptions {
  handle: EventHandler<P>;
}

export interface SubscriberInfo {
  readonly name: string;
  readonly pattern: string;
  readonly queue: string;
  readonly idempotent: boolean;
}

/**
 * A subscriber is a job (kind "pgbus.job", named `subscriber.<name>`, on the subscriber's
 * queue) whose perform hands the event to the handler: so loadJobsModule registers it,
 * threads mode loads it in every thread, and retries, backoff and the DLQ are the jobs'.
 */
export interface SubscriberDefinition<P = unknown> extends JobDefinition<EventMessage<P>> {
  readonly subscriber: SubscriberInfo;
}

const SUBSCRIBER_NAME = /^[a-z0-9_]{1,40}$/;
export const SUBSCRIBER_JOB_PREFIX = "subscriber.";

export function validateSubscriberName(name: unknown): string {
  if (typeof name !== "string" || !SUBSCRIBER_NAME.test(name)) {
    throw new ValidationError("INVALID_OPTION", `invalid subscriber name ${JSON.stringify(name)}: use 1-40 characters of a-z, 0-9 and "_"`);
  }
  return name;
}

/** Defines a subscriber; export it from a jobs module so `pgbus start` and threads mode load it. */
export function defineSubscriber<P = unknown>(options: SubscriberDefinitionOptions<P>): SubscriberDefinition<P> {
  const name = validateSubscriberName(options.name);
  const pattern = validateTopicPattern(options.pattern);
  const queue = validateQueueName(options.queue ?? `ev_${name}`, MAX_QUEUE_NAME_WITH_DLQ);
  if (typeof options.handle !== "function") throw new ValidationError("INVALID_OPTION", `subscriber ${name}: handle must be a function`);
  if (options.idempotent !== undefined && typeof options.idempotent !== "boolean") {
    throw new ValidationError("INVALID_OPTION", `subscriber ${name}: idempotent must be a boolean, got ${String(options.idempotent)}`);
  }
  const handle = options.handle;
  const job = defineJob<EventMessage<P>>({
    name: `${SUBSCRIBER_JOB_PREFIX}${name}`,
    queue,
    maxRetries: options.maxRetries,
    backoff: options.backoff,
    timeoutMs: options.timeoutMs,
    async perform(message, ctx) {
      if (!isEventMessage(message)) throw new ValidationError("INVALID_PAYLOAD", `subscriber ${name} got a message that is not an event`);
      const event = fromEventMessage(message);
      await handle(event, { ...ctx, subscriber: name, markHandled: (client) => markHandled(client, name, event.eventId) });
    },
  });
  return Object.freeze({ ...job, subscriber: Object.freeze({ name, pattern, queue, idempotent: options.idempotent ?? false }) });
}

export function isSubscriberDefinition(value: unknown): value is SubscriberDefinition {
  if (!isJobDefinition(value)) return false;
  const info = (value as { subscriber?: Partial<SubscriberInfo> }).subscriber;
  return typeof info === "object" && info !== null && typeof info.name === "string" && typeof info.pattern === "string";
}

async function markHandled(client: Queryable, subscriber: string, eventId: string): Promise<boolean> {
  if (!client || typeof client.query !== "function") {
    throw new ValidationError("INVALID_OPTION", `markHandled needs a database handle with query(text, values), got ${String(client)}`);
  }
  const result = await client.query(MARK_HANDLED, [subscriber, eventId]);
  return result.rows.length > 0;
}

/** Checks that no two subscribers share a name or a queue; returns them keyed by queue. */
export function subscribersByQueue(subscribers: Iterable<SubscriberDefinition>): Map<string, SubscriberDefinition> {
  const byQueue = new Map<string, SubscriberDefinition>();
  const names = new Map<string, SubscriberDefinition>();
  for (const subscriber of subscribers) {
    const { name, queue } = subscriber.subscriber;
    const sameName = names.get(name);
    if (sameName && sameName !== subscriber)
      throw new ValidationError("DUPLICATE_JOB", `two different subscribers are named ${JSON.stringify(name)}`);
    const sameQueue = byQueue.get(queue);
    if (sameQueue && sameQueue !== subscriber) {
      throw new ValidationError(
        "INVALID_OPTION",
        `subscribers ${sameQueue.subscriber.name} and ${name} share queue ${queue}; each subscriber needs its own queue`,
      );
    }
    names.set(name, subscriber);
    byQueue.set(queue, subscriber);
  }
  return byQueue;
}
