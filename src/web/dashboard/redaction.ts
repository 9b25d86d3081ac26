/**
 * The application's redaction hook and the server-side cut of payloads: what leaves the
 * server is the redacted payload, at most PAYLOAD_CUT characters unless "show all" asked.
 */

export interface JobRef {
  queue: string;
  id: string;
  job: string | null;
}

/** Returns what to show instead of `payload` (e.g. with secrets masked). */
export type RedactHook = (payload: unknown, job: JobRef) => unknown;

export const PAYLOAD_CUT = 4_000;
const PREVIEW_CUT = 160;

export function payloadText(
  payload: unknown,
  ref: JobRef,
  redact: RedactHook | undefined,
  full: boolean,
): { text: string; total: number; cut: boolean } {
  const shown = redact ? redact(payload, ref) : payload;
  const text = JSON.stringify(shown, null, 2) ?? "undefined";
  if (full || text.length <= PAYLOAD_CUT) return { text, total: text.length, cut: false };
  return { text: text.slice(0, PAYLOAD_CUT), total: text.length, cut: true };
}

/** The list's one-line preview: the database's cut when nothing is redacted; else the hook's result on a small payload. */
export function previewText(row: { preview: string | null; smallPayload: unknown }, ref: JobRef, redact: RedactHook | undefined): string {
  if (!redact) return row.preview ?? "";
  if (row.smallPayload === null || row.smallPayload === undefined) return "(open the job to see its payload)";
  return (JSON.stringify(redact(row.smallPayload, ref)) ?? "").slice(0, PREVIEW_CUT);
}
