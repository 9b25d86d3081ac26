import { type Queryable, runStatement } from "../db/queryable.ts";
import { DEFAULT_MAX_PAYLOAD_BYTES, checkPayloadValue, serializeJson } from "../queue/payload.ts";
import { type Event, type PublishOptions, delaySeconds, newEvent, toEventMessage } from "./event.ts";
import { validateRoutingKey } from "./routing.ts";
import { PUBLISH } from "./sql.ts";
import { asQueueNotFound } from "../queue/missing.ts";

/** What publish returns: the event, and how many queues got a copy (0: no subscriber's pattern matched). */
export interface PublishedEvent<P = unknown> extends Event<P> {
  queues: number;
}

export interface PublishTarget {
  db: Queryable;
  /** Prepare the statement by name: only for pgbus's own pg.Pool, never a caller's handle. */
  prepared: boolean;
  maxPayloadBytes?: number;
}

/**
 * Publishes one event: validates the routing key, then fans the event out to every bound
 * queue whose pattern matches, inside PostgreSQL, in one statement (pgmq.send_topic). On a
 * caller's transaction handle the copies exist only if that transaction commits.
 */
export async function publishEvent<P>(
  target: PublishTarget,
  routingKey: string,
  payload: P,
  options: PublishOptions = {},
): Promise<PublishedEvent<P>> {
  validateRoutingKey(routingKey);
  const delay = delaySeconds(options.delayMs);
  checkPayloadValue(payload, `payload of event ${routingKey}`);
  const event = newEvent(routingKey, payload);
  const body = serializeJson(toEventMessage(event), `event ${routingKey}`, target.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES);
  const headers = options.headers === undefined ? null : serializeJson(options.headers, `headers of event ${routingKey}`);
  // A subscriber queue dropped under the publish (the copy to it found no table) is named,
  // typed: pgmq.send_topic skips queues dropped before it locks them, but a caller's
  // REPEATABLE READ snapshot, or the pgmq extension's own send_topic, can still meet one.
  const rows = await runStatement<{ queues: number }>(target.db, target.prepared, PUBLISH, [routingKey, body, headers, delay]).catch(
    (error: unknown) => {
      throw asQueueNotFound(error);
    },
  );
  return { ...event, queues: Number(rows[0]?.queues ?? 0) };
}
