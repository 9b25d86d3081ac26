/**
 * The job envelope: the body `Pgbus.enqueue` writes into a queue, `{ "job": name,
 * "payload": ... }`. Every writer and reader of that shape goes through this module, so a
 * plain PGMQ producer in any language only has to write this one JSON object.
 */
export interface JobMessage<P = unknown> {
  job: string;
  payload: P;
}

export function jobEnvelope<P>(job: string, payload: P): JobMessage<P> {
  return { job, payload };
}

/** The envelope in a message body, or null when the body is not a pgbus job. */
export function readJobEnvelope(body: unknown): JobMessage | null {
  const candidate = body as { job?: unknown; payload?: unknown } | null;
  return candidate && typeof candidate === "object" && typeof candidate.job === "string"
    ? { job: candidate.job, payload: candidate.payload }
    : null;
}
