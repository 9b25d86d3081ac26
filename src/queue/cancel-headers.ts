/**
 * The wire vocabulary of cancellation (bus.cancel, `pgbus cancel`), shared by the
 * statements that write it and the worker that reads it.
 *
 * - `pgbus_cancel_requested` (`{ at, by }`) is set on a message still in its queue whose
 *   cancel has to wait for the run that holds it: the worker settles that run as cancelled,
 *   and a worker that claims a message carrying it settles it as cancelled without running it.
 * - `pgbus_cancelled_at` / `pgbus_cancelled_by` are on every message archived as cancelled
 *   (when and by whom the cancel was asked for); nothing else writes them.
 */
export const CANCEL_HEADER = {
  requested: "pgbus_cancel_requested",
  cancelledAt: "pgbus_cancelled_at",
  cancelledBy: "pgbus_cancelled_by",
} as const;

/**
 * Cancellations travel on the queues' wake-up channel (so under `pgbus start` they reach
 * every child through the supervisor's one LISTEN, like wake-ups), with a payload no queue
 * name can have: queue names are `[a-z0-9_]`, so a payload with a colon is never a queue.
 */
export const CANCEL_NOTIFY_PREFIX = "cancel:";

/** The run a cancel notification names, or null when the payload is a queue's wake-up. */
export function parseCancelNotification(payload: string): { queue: string; messageId: string } | null {
  if (!payload.startsWith(CANCEL_NOTIFY_PREFIX)) return null;
  const rest = payload.slice(CANCEL_NOTIFY_PREFIX.length);
  const colon = rest.lastIndexOf(":");
  if (colon <= 0) return null;
  return { queue: rest.slice(0, colon), messageId: rest.slice(colon + 1) };
}
