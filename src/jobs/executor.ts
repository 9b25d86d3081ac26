import { toErrorRecord } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { JobOutcome, JobTask } from "../pools/types.ts";
import type { JobDefinition } from "./define.ts";
import type { JobRegistry } from "./registry.ts";

/**
 * Runs one task's perform() and describes how it ended. Never throws: whatever the handler
 * throws (an Error, a string, undefined, a rejected promise with no reason) becomes an
 * outcome. Used the same way on the event loop (async mode) and inside a thread.
 */
export async function executeJob(registry: JobRegistry, task: JobTask, abort: { readonly signal: AbortSignal }, logger: Logger): Promise<JobOutcome> {
  const job = registry.get(task.job);
  if (!job) {
    return {
      ok: false,
      permanent: true,
      error: { name: "UnknownJobError", message: `no job named ${JSON.stringify(task.job)} is registered in this worker` },
    };
  }
  const validated = await validatePayload(job, task.payload);
  if (!validated.ok) return validated;
  try {
    await job.perform(validated.value, {
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
    return { ok: true };
  } catch (thrown) {
    return { ok: false, error: toErrorRecord(thrown) };
  }
}

async function validatePayload(
  job: JobDefinition,
  payload: unknown,
): Promise<{ ok: true; value: unknown } | { ok: false; permanent: true; error: { name: string; message: string } }> {
  if (!job.schema) return { ok: true, value: payload };
  try {
    const result = await job.schema["~standard"].validate(payload);
    if (!result.issues) return { ok: true, value: result.value };
    const issues = result.issues
      .map((issue) => {
        const path = (issue.path ?? []).map((part) => String(typeof part === "object" ? part.key : part)).join(".");
        return path ? `${path}: ${issue.message}` : issue.message;
      })
      .join("; ");
    return { ok: false, permanent: true, error: { name: "InvalidPayloadError", message: `payload of job ${job.name} is invalid: ${issues}` } };
  } catch (thrown) {
    return { ok: false, permanent: true, error: { name: "InvalidPayloadError", message: `validating payload of job ${job.name} threw: ${toErrorRecord(thrown).message}` } };
  }
}
