import type { JobDefinition } from "../jobs/define.ts";
import { unknownJob } from "../jobs/executor.ts";
import { type FailedOutcome, permanentFailure } from "../jobs/outcome.ts";
import { exceedsDeliveries } from "../jobs/settlement.ts";
import type { RoutedMessage } from "./options.ts";
import type { ClaimedMessage } from "./worker-store.ts";

/**
 * Why a claimed message cannot run, as the outcome it settles with, or null when it can:
 * its body is not a job, no job of that name is registered here, or it was delivered more
 * often than its job's runs allow (its runs keep crashing their process).
 */
export function unrunnableOutcome(
  message: ClaimedMessage,
  routed: RoutedMessage | null,
  definition: JobDefinition | undefined,
): FailedOutcome | null {
  if (!routed) {
    const detail = JSON.stringify(message.message)?.slice(0, 200);
    return permanentFailure(
      "invalid_message",
      "InvalidMessageError",
      `message is not a pgbus job: expected {"job": string, "payload": ...}, got ${detail}`,
    );
  }
  if (!definition) return unknownJob(routed.job);
  if (exceedsDeliveries(message.readCt, definition.maxRetries)) {
    const runs = definition.maxRetries + 1;
    return permanentFailure(
      "max_deliveries",
      "MaxDeliveriesError",
      `delivered ${message.readCt} times for at most ${runs} run(s) (maxRetries ${definition.maxRetries}) without settling: its runs keep ending without an outcome, e.g. crashing the worker process`,
    );
  }
  return null;
}
