import { toErrorRecord } from "../errors.ts";
import type { JobOutcome } from "./types.ts";

/** A run that ended with something thrown outside the handler (a pool or thread failure). */
export function failedOutcome(thrown: unknown): JobOutcome {
  return { ok: false, error: toErrorRecord(thrown) };
}

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
