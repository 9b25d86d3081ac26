import { randomUUID } from "node:crypto";
import { ValidationError } from "../errors.ts";
import type { Headers } from "../queue/client.ts";

/** An event as publishers get it back and handlers receive it. */
export interface Event<P = unknown> {
  /** A uuid (crypto.randomUUID), the same in every subscriber's copy: the idempotency key. */
  eventId: string;
  routingKey: string;
  payload: P;
  publishedAt: Date;
}

/**
 * How an event is stored in a queue: snake_case JSON so that PGMQ consumers in any
 * language can read it (and produce it: a hand-written body with these four fields is an
 * event like any other).
 */
export interface EventMessage<P = unknown> {
  event_id: string;
  routing_key: string;
  payload: P;
  /** ISO 8601. */
  published_at: string;
}

export interface PublishOptions {
  /** Stored as the message headers of every copy, as given. */
  headers?: Headers;
  /**
   * Copies become visible this long after the publish. pgmq.send_topic counts delays in
   * whole seconds, so this is rounded up to the next second.
   */
  delayMs?: number;
}

export function newEvent<P>(routingKey: string, payload: P): Event<P> {
  return { eventId: randomUUID(), routingKey, payload, publishedAt: new Date() };
}

export function toEventMessage<P>(event: Event<P>): EventMessage<P> {
  return { event_id: event.eventId, routing_key: event.routingKey, payload: event.payload, published_at: event.publishedAt.toISOString() };
}

/** A message body that can be handed to a subscriber: it names an event id and a routing key. */
export function isEventMessage(message: unknown): message is EventMessage {
  const body = message as Partial<EventMessage> | null;
  return (
    typeof body === "object" &&
    body !== null &&
    !Array.isArray(body) &&
    typeof body.event_id === "string" &&
    UUID.test(body.event_id) &&
    typeof body.routing_key === "string"
  );
}

export function fromEventMessage<P>(message: EventMessage<P>): Event<P> {
  const publishedAt = new Date(message.published_at);
  return {
    eventId: message.event_id,
    routingKey: message.routing_key,
    payload: message.payload,
    // A hand-written body may lack the time; an invalid Date would only mislead.
    publishedAt: Number.isNaN(publishedAt.getTime()) ? new Date(0) : publishedAt,
  };
}

/** The same test as pgbus.event_id_of in SQL: what PostgreSQL's uuid type reads back unchanged. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The outbox stores delays as an int4 of milliseconds (about 24.8 days). */
export const MAX_DELAY_MS = 2_147_483_647;

export function validateDelayMs(delayMs: number | undefined): number {
  if (delayMs === undefined) return 0;
  if (typeof delayMs !== "number" || !Number.isFinite(delayMs) || delayMs < 0 || delayMs > MAX_DELAY_MS) {
    throw new ValidationError("INVALID_OPTION", `delayMs must be a number from 0 to ${MAX_DELAY_MS}, got ${String(delayMs)}`);
  }
  return Math.ceil(delayMs);
}

/** pgmq.send_topic takes its delay in whole seconds: rounded up, so a copy is never early. */
export function delaySeconds(delayMs: number | undefined): number {
  return Math.ceil(validateDelayMs(delayMs) / 1000);
}
