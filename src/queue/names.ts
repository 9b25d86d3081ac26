import { ValidationError } from "../errors.ts";

/**
 * PGMQ keeps queue names to 47 characters so that its table and index names fit
 * PostgreSQL's 63-byte identifiers. A queue pgbus creates also gets `<name>_dlq`, so
 * names given to createQueue must leave room for that suffix.
 */
export const MAX_QUEUE_NAME_LENGTH = 47;
export const DLQ_SUFFIX = "_dlq";
export const MAX_QUEUE_NAME_WITH_DLQ = MAX_QUEUE_NAME_LENGTH - DLQ_SUFFIX.length;

const QUEUE_NAME = /^[a-z0-9_]+$/;

/** Checks a queue name before it can reach any SQL; returns it unchanged. */
export function validateQueueName(name: unknown, maxLength: number = MAX_QUEUE_NAME_LENGTH): string {
  const rule = `queue names are 1-${maxLength} characters of a-z, 0-9 and "_"`;
  if (typeof name !== "string") {
    throw new ValidationError("INVALID_QUEUE_NAME", `invalid queue name ${String(name)} (${typeof name}): ${rule}`);
  }
  if (name.length === 0 || name.length > maxLength || !QUEUE_NAME.test(name)) {
    const shown = name.length > 60 ? `${JSON.stringify(name.slice(0, 60))}... (${name.length} characters)` : JSON.stringify(name);
    throw new ValidationError("INVALID_QUEUE_NAME", `invalid queue name ${shown}: ${rule}`);
  }
  return name;
}

export function dlqName(queue: string): string {
  return `${queue}${DLQ_SUFFIX}`;
}

export function isDlqName(queue: string): boolean {
  return queue.endsWith(DLQ_SUFFIX);
}

/** Schema-qualified, quoted table names; only ever built from a validated name. */
export function queueTable(queue: string): string {
  return `pgmq."q_${validateQueueName(queue)}"`;
}

export function archiveTable(queue: string): string {
  return `pgmq."a_${validateQueueName(queue)}"`;
}
