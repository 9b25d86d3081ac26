import { type Queryable, runStatement } from "../db/queryable.ts";
import { ValidationError, storableText } from "../errors.ts";
import { cancelMessage } from "./cancel-sql.ts";
import { requireQueue } from "./pause.ts";

/**
 * What a cancel did (see docs/jobs.md, cancellation):
 * - `cancelled`: the job was waiting or delayed and is now in the queue's archive as
 *   cancelled; it will never run. (Also the answer for a job already archived as cancelled.)
 * - `cancelling`: the job is claimed: a run holds it, or it waits out a retry's backoff or a
 *   dead worker's visibility timeout. The cancel is recorded on the message and the run's
 *   ctx.signal is aborted wherever it runs; the job is never retried nor run again, and it is
 *   archived as cancelled when that run ends, unless the run had already succeeded before
 *   its worker learnt of the cancel (it then stays a success).
 * - `already_finished`: the job is no longer in the queue: it succeeded, was dead-lettered,
 *   deleted or purged.
 * - `not_found`: the queue never had a message with that id.
 */
export type CancelStatus = "cancelled" | "cancelling" | "already_finished" | "not_found";

export interface CancelResult {
  status: CancelStatus;
}

export interface CancelOptions {
  /** Who cancels, recorded on the archived message as `pgbus_cancelled_by`. Default: not recorded (null). */
  by?: string;
}

const MAX_BY_LENGTH = 200;

/** A message id as given (digits, or a non-negative safe integer or bigint), or a ValidationError naming it. */
export function validateMessageId(id: unknown): string {
  const text = typeof id === "bigint" || (typeof id === "number" && Number.isSafeInteger(id)) ? String(id) : id;
  if (typeof text !== "string" || !/^[0-9]{1,19}$/.test(text) || BigInt(text) > 9223372036854775807n) {
    throw new ValidationError(
      "INVALID_OPTION",
      `message id must be a non-negative integer (a string of digits, a number or a bigint), got ${JSON.stringify(String(id))}`,
    );
  }
  return text;
}

/**
 * Cancels one job by its message id. Throws QUEUE_NOT_FOUND for a queue that does not
 * exist, a ValidationError for an id or `by` that breaks its rule.
 */
export async function cancelJob(db: Queryable, queue: string, messageId: unknown, options: CancelOptions = {}): Promise<CancelResult> {
  const id = validateMessageId(messageId);
  const by = options.by;
  if (by !== undefined && (typeof by !== "string" || by.length === 0 || by.length > MAX_BY_LENGTH || storableText(by) !== by)) {
    throw new ValidationError(
      "INVALID_OPTION",
      `cancel option by must be a string of 1 to ${MAX_BY_LENGTH} characters, got ${JSON.stringify(by)}`,
    );
  }
  await requireQueue(db, queue);
  const [row] = await runStatement<{ status: CancelStatus }>(db, false, cancelMessage(queue), [id, by ?? null]);
  return { status: row!.status };
}
