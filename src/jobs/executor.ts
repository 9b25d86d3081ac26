import { toErrorRecord } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { type FailedOutcome, type JobOutcome, type JobTask, failedOutcome, leaseExpiredOutcome, permanentFailure } from "./outcome.ts";
import type { JobDefinition } from "./define.ts";
import type { JobRegistry } from "./registry.ts";
import { describeIssues, payloadIssues } from "./schema-issues.ts";

const SUCCEEDED: JobOutcome = Object.freeze({ ok: true as const });

/**
 * Runs one task's perform() and describes how it ended. Never throws: whatever the handler
 * throws (an Error, a string, undefined, a rejected promise with no reason) becomes an
 * outcome. Used the same way on the event loop (async mode) and inside a thread.
 * `leaseExpired` says whether the message's claim may have lapsed by the time the handler
 * would start (PostOptions.leaseUntil): then it is not called (leaseExpiredOutcome()).
 *
 * Written without async/await on purpose: this runs once per job, and a job without a
 * schema then costs one promise of ours on top of the handler's.
 */
export function executeJob(
  registry: JobRegistry,
  task: JobTask,
  abort: { readonly signal: AbortSignal },
  logger: Logger,
  leaseExpired: () => boolean = never,
): Promise<JobOutcome> {
  const job = registry.get(task.job);
  if (!job) {
    return Promise.resolve(unknownJob(task.job));
  }
  if (!job.schema) return perform(job, task.payload, task, abort, logger, leaseExpired);
  return validatePayload(job, task.payload).then((validated) =>
    validated.ok ? perform(job, validated.value, task, abort, logger, leaseExpired) : validated,
  );
}

const never = (): boolean => false;

/** `leaseExpired` is asked right before the handler is called: after this, the run has started. */
function perform(
  job: JobDefinition,
  payload: unknown,
  task: JobTask,
  abort: { readonly signal: AbortSignal },
  logger: Logger,
  leaseExpired: () => boolean,
): Promise<JobOutcome> {
  if (leaseExpired()) return Promise.resolve(leaseExpiredOutcome());
  try {
    const running = job.perform(payload, {
      messageId: task.messageId,
      attempt: task.attempt,
      job: task.job,
      queue: task.queue,
      // A getter: the signal (and its controller) is made only if the handler reads it.
      get signal() {
        return abort.signal;
      },
      logger,
    });
    return Promise.resolve(running).then(() => SUCCEEDED, failedOutcome);
  } catch (thrown) {
    return Promise.resolve(failedOutcome(thrown));
  }
}

async function validatePayload(job: JobDefinition, payload: unknown): Promise<{ ok: true; value: unknown } | FailedOutcome> {
  if (!job.schema) return { ok: true, value: payload };
  try {
    const result = await job.schema["~standard"].validate(payload);
    if (!result.issues) return { ok: true, value: result.value };
    const issues = describeIssues(payloadIssues(result.issues));
    return permanentFailure("invalid_payload", "InvalidPayloadError", `payload of job ${job.name} is invalid: ${issues}`);
  } catch (thrown) {
    const message = `validating payload of job ${job.name} threw: ${toErrorRecord(thrown).message}`;
    return permanentFailure("invalid_payload", "InvalidPayloadError", message);
  }
}

/** The outcome of a message naming a job this process does not have. */
export function unknownJob(name: string): FailedOutcome {
  return permanentFailure("unknown_job", "UnknownJobError", `no job named ${JSON.stringify(name)} is registered in this worker`);
}
