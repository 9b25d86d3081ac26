import type { ErrorRecord } from "../errors.ts";

/**
 * The headers dead-lettering adds to a message it moves to `<queue>_dlq`: written here
 * (and by the move statement in sql.ts, which adds `pgbus_read_ct`), read back by
 * `pgbus dlq`, and dropped again when a dead letter is retried so the message looks as it
 * was sent.
 */
export const DEAD_LETTER_HEADER = {
  error: "pgbus_error",
  sourceQueue: "pgbus_source_queue",
  sourceMessageId: "pgbus_source_msg_id",
  deadAt: "pgbus_dead_at",
  readCount: "pgbus_read_ct",
} as const;

export const DEAD_LETTER_HEADERS: readonly string[] = Object.values(DEAD_LETTER_HEADER);

/** Why a message was dead-lettered. */
export type DeadLetterReason =
  "retries_exhausted" | "unknown_job" | "invalid_payload" | "invalid_message" | "max_deliveries" | "invalid_limit_key";

export type DeadLetterError = ErrorRecord & { reason: string };

/** The headers the move writes (all but the read count, which the statement takes from the row). */
export function deadLetterHeaders(queue: string, id: string, error: DeadLetterError, deadAt: Date = new Date()): Record<string, unknown> {
  return {
    [DEAD_LETTER_HEADER.error]: error,
    [DEAD_LETTER_HEADER.sourceQueue]: queue,
    [DEAD_LETTER_HEADER.sourceMessageId]: id,
    [DEAD_LETTER_HEADER.deadAt]: deadAt.toISOString(),
  };
}

export interface DeadLetterInfo {
  /** Runs before it was dead-lettered. */
  attempts: number | null;
  deadAt: string | null;
  reason: string | null;
  error: { name: string; message: string } | null;
}

export function parseDeadLetterHeaders(headers: Record<string, unknown> | null): DeadLetterInfo {
  const all = headers ?? {};
  const error = all[DEAD_LETTER_HEADER.error] as { name?: unknown; message?: unknown; reason?: unknown } | undefined;
  const attempts = all[DEAD_LETTER_HEADER.readCount];
  const deadAt = all[DEAD_LETTER_HEADER.deadAt];
  return {
    attempts: typeof attempts === "number" ? attempts : null,
    deadAt: typeof deadAt === "string" ? deadAt : null,
    reason: typeof error?.reason === "string" ? error.reason : null,
    error: error ? { name: String(error.name ?? "Error"), message: String(error.message ?? "") } : null,
  };
}
