import { type JobOutcome, failedOutcome } from "../jobs/outcome.ts";

/**
 * A run given up on: the same record in both modes whatever the abort reason was, so the
 * worker can tell an abort from a handler failure by `error.name` alone.
 */
export function abortedOutcome(reason: unknown): JobOutcome {
  const message = reason instanceof Error ? reason.message : typeof reason === "string" ? reason : "the run was aborted";
  return { ok: false, error: { name: "AbortError", message } };
}

/** The abort reason kill() gives every run it aborts. */
export function killReason(): DOMException {
  return new DOMException("execution pool was killed", "AbortError");
}

/** A run whose thread died under it: no outcome of its own (see JobOutcome's `interrupted`). */
export function interruptedOutcome(thrown: unknown): JobOutcome {
  return { ...(failedOutcome(thrown) as Extract<JobOutcome, { ok: false }>), interrupted: true };
}
