import { PgbusError, type ErrorRecord } from "../errors.ts";
import type { JobDefinition } from "../jobs/define.ts";
import type { PermanentFailure } from "../jobs/outcome.ts";
import { JobRegistry } from "../jobs/registry.ts";
import { decideSettlement } from "../jobs/settlement.ts";
import { silentLogger, type Logger } from "../logger.ts";
import { createExecutionPool } from "../pools/create.ts";

/** One run of a job in the test's own process, as an execution pool runs it for a worker. */
export interface InlineRun {
  job: string;
  queue: string;
  messageId: string;
  attempt: number;
  ok: boolean;
  error?: ErrorRecord;
  /** What the handler threw, as thrown (an Error instance keeps its class). */
  thrown?: unknown;
  permanent?: PermanentFailure;
}

/**
 * A job that failed when run inline: the handler threw, its payload failed the job's
 * schema, or it timed out. `cause` is what the handler threw, as thrown; `runs` holds
 * every attempt (more than one when retries were asked for).
 */
export class InlineJobError extends Error {
  readonly job: string;
  readonly runs: InlineRun[];
  /** The reason a worker would have moved the message to the DLQ, if it would have. */
  readonly deadLetterReason: PermanentFailure | "retries_exhausted" | undefined;

  constructor(job: string, runs: InlineRun[], deadLetterReason: InlineJobError["deadLetterReason"]) {
    const last = runs[runs.length - 1]!;
    super(`job ${job} failed when run inline (attempt ${last.attempt}): ${last.error?.name}: ${last.error?.message}`, {
      cause: last.thrown ?? last.error,
    });
    this.name = "InlineJobError";
    this.job = job;
    this.runs = runs;
    this.deadLetterReason = deadLetterReason;
  }
}

let nextMessageId = 0;

/** Message ids for runs that never touch a queue: numeric strings like PGMQ's, counting up per process. */
export function inlineMessageId(): string {
  nextMessageId += 1;
  return String(nextMessageId);
}

const NOTHING_THROWN = Symbol("nothing thrown");

/**
 * Runs `payload` through `job` the way a worker does: in an async execution pool, with
 * the job's schema validation, its context (messageId, attempt, job, queue, signal,
 * logger) and its timeout. With `retries`, a failed run is run again, without waiting
 * for the backoff, until it succeeds or the job's maxRetries are used up.
 */
export async function runJobInline(
  job: JobDefinition,
  payload: unknown,
  options: { retries?: boolean; logger?: Logger; messageId?: string } = {},
): Promise<InlineRun[]> {
  let thrown: unknown = NOTHING_THROWN;
  // The same definition, except that what perform throws is kept as thrown.
  const capture: JobDefinition = {
    ...job,
    perform(value, ctx) {
      thrown = NOTHING_THROWN;
      try {
        return Promise.resolve(job.perform(value, ctx)).catch((error: unknown) => {
          thrown = error;
          throw error;
        });
      } catch (error) {
        thrown = error;
        throw error;
      }
    },
  };
  const pool = await createExecutionPool({
    mode: "async",
    capacity: 1,
    registry: new JobRegistry([capture]),
    logger: options.logger ?? silentLogger,
  });
  const messageId = options.messageId ?? inlineMessageId();
  const runs: InlineRun[] = [];
  try {
    for (let attempt = 1; ; attempt++) {
      const signal = job.timeoutMs ? AbortSignal.timeout(job.timeoutMs) : undefined;
      // AbortSignal.timeout does not keep the process alive; a worker's loop would.
      const keepAlive = signal ? setTimeout(() => {}, job.timeoutMs! + 1_000) : undefined;
      const outcome = await pool
        .post({ job: job.name, payload, messageId, attempt, queue: job.queue }, { signal })
        .finally(() => clearTimeout(keepAlive));
      const run: InlineRun = { job: job.name, queue: job.queue, messageId, attempt, ok: outcome.ok };
      if (!outcome.ok) {
        run.error = outcome.error;
        if (thrown !== NOTHING_THROWN) run.thrown = thrown;
        if (outcome.permanent) run.permanent = outcome.permanent;
      }
      runs.push(run);
      if (outcome.ok) return runs;
      const settlement = decideSettlement({ outcome, abandoned: false, policy: job, attempt });
      if (settlement.action === "dead_letter")
        throw new InlineJobError(job.name, runs, settlement.reason as InlineJobError["deadLetterReason"]);
      if (!options.retries) throw new InlineJobError(job.name, runs, undefined);
    }
  } finally {
    pool.shutdown();
  }
}

/** Thrown by the `expect*` helpers on a bus that is not in fake mode. */
export function notFake(helper: string): PgbusError {
  return new PgbusError("INVALID_OPTION", `${helper}: the bus is not in fake mode; call fake(bus) first`);
}
