import type { Queryable } from "../db/queryable.ts";
import { ValidationError } from "../errors.ts";
import type { Headers } from "../queue/client.ts";
import { type JobMessage, jobEnvelope } from "../queue/envelope.ts";
import { checkPayloadValue, describeValue } from "../queue/payload.ts";
import { PRIORITY_HEADER, validatePriority, withPriority } from "../queue/priority.ts";
import { type UniqueFor, uniqueEnqueueOptions } from "../queue/unique.ts";
import { type JobDefinition, isJobDefinition } from "./define.ts";
import { describeIssues, payloadIssues } from "./schema-issues.ts";

export interface EnqueueOptions<P = unknown> {
  /** Run no sooner than this many ms from now. */
  delayMs?: number;
  /** Run no sooner than this time. */
  runAt?: Date;
  /** Enqueue inside the caller's transaction: a pg PoolClient, or any `{ query(text, values) }`. */
  client?: Queryable;
  headers?: Headers;
  /**
   * Idempotency key: while a message of this job with this key is in the queue (waiting,
   * delayed or running), enqueueing it again inserts nothing and returns the existing
   * message's id. Released when the message leaves the queue (acked, deleted,
   * dead-lettered). A string (1-512 characters), or for enqueueMany a function giving each
   * payload's key (null or undefined: none). See docs/jobs.md, unique jobs.
   */
  uniqueKey?: string | ((payload: P, index: number) => string | null | undefined);
  /**
   * How long a uniqueKey is held. "until_done" (default): while the job waits, is delayed
   * or runs, until its message leaves the queue. "queued": only while it waits or is
   * delayed; released when a worker claims it, so another can be enqueued while it runs.
   * Only with uniqueKey.
   */
  uniqueFor?: UniqueFor;
  /** FIFO group (PGMQ's `x-pgmq-group` header): see QueueClient.readGrouped. */
  groupKey?: string;
  /**
   * 0-9, 0 runs first; default the job's `priority` (itself default 5). Among the messages
   * of a queue that are due, a better priority is always claimed first. See docs/jobs.md,
   * priorities.
   */
  priority?: number;
}

/** An enqueue, checked and ready to send: the messages, their headers and unique keys. */
export interface PreparedEnqueue<P> {
  messages: JobMessage<P>[];
  headers: Headers | undefined;
  uniqueKeys: Array<string | null> | undefined;
  uniqueFor: UniqueFor;
}

/**
 * Checks an enqueue before anything is sent: the job is a definition, every payload is
 * storable and passes the job's schema, and the unique and priority options are valid.
 * `single`: enqueue (errors say "payload of job x") rather than enqueueMany ("payload 3").
 */
export async function prepareEnqueue<P>(
  job: JobDefinition<P>,
  payloads: readonly P[],
  options: EnqueueOptions<P>,
  single: boolean,
): Promise<PreparedEnqueue<P>> {
  if (!isJobDefinition(job)) {
    throw new ValidationError("INVALID_OPTION", `enqueue needs a job definition made with defineJob, got ${describeValue(job)}`);
  }
  if (!Array.isArray(payloads)) {
    throw new ValidationError(
      "INVALID_OPTION",
      `enqueueMany needs an array of payloads for job ${job.name}, got ${describeValue(payloads)}`,
    );
  }
  for (const [index, payload] of payloads.entries()) {
    checkPayloadValue(payload, payloadLabel(job as JobDefinition, single ? null : index));
    await validateForEnqueue(job, payload, single ? null : index);
  }
  const { uniqueKeys, uniqueFor } = uniqueEnqueueOptions(options, payloads);
  if (options.headers && typeof options.headers === "object" && PRIORITY_HEADER in options.headers) {
    throw new ValidationError("INVALID_OPTION", `the header ${PRIORITY_HEADER} is pgbus's own; give the priority as the priority option`);
  }
  const priority =
    options.priority === undefined ? job.priority : validatePriority(options.priority, `job ${job.name}: enqueue option priority`);
  return {
    messages: payloads.map((payload) => jobEnvelope(job.name, payload)),
    headers: withPriority(options.headers, priority),
    uniqueKeys,
    uniqueFor,
  };
}

/** `payload of job x` for a single enqueue, `payload 3 of job x` for the fourth of a batch. */
function payloadLabel(job: JobDefinition, index: number | null): string {
  return index === null ? `payload of job ${job.name}` : `payload ${index} of job ${job.name}`;
}

export async function validateForEnqueue<P>(job: JobDefinition<P>, payload: P, index: number | null): Promise<void> {
  if (!job.schema) return;
  const result = await job.schema["~standard"].validate(payload);
  if (result.issues) {
    const issues = payloadIssues(result.issues);
    throw new ValidationError("INVALID_PAYLOAD", `${payloadLabel(job as JobDefinition, index)} is invalid: ${describeIssues(issues)}`, {
      issues,
    });
  }
}
