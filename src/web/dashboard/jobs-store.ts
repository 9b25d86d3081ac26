import type { Queryable } from "../../db/queryable.ts";
import { ValidationError } from "../../errors.ts";
import { dlqName, isDlqName, validateQueueName } from "../../queue/names.ts";
import * as sql from "./sql.ts";

/**
 * The jobs list and the job page: keyset pages by msg_id, never OFFSET, never a count. A
 * filtered search looks at a bounded window of ids per request (SCAN_WINDOW) and, when the
 * window held fewer matches than a page, offers to go on below it, so no request scans a
 * big table whatever the filter.
 */

export const JOB_STATES = ["all", "waiting", "scheduled", "active", "completed", "dead"] as const;
export type JobState = (typeof JOB_STATES)[number];

export const PAGE_SIZE = 50;
/** Ids looked at per request. At ~1 µs a row this bounds a filtered page to tens of ms. */
export const SCAN_WINDOW = 50_000;

export interface JobFilter {
  queue: string;
  state: JobState;
  job: string | null;
  /** A payload path and the value at it, from `user.id=42`. */
  payload: { path: string[]; value: string } | null;
  /** Start below this id (the keyset cursor). */
  before: string | null;
}

export interface JobRow {
  id: string;
  readCt: number;
  enqueuedAt: Date;
  job: string | null;
  state: string;
  preview: string | null;
  /** The payload when it is small (for a redaction hook to preview it); null otherwise. */
  smallPayload: unknown;
}

export interface JobPage {
  /** The table listed: the queue, or its DLQ for state "dead". */
  queue: string;
  rows: JobRow[];
  /** Cursor of the next (older) page; null at the end. */
  next: string | null;
  /** The window searched, when the page came back short and older ids remain. */
  searchedDownTo: string | null;
}

const ID = /^[1-9][0-9]{0,18}$/;
const PATH_SEGMENT = /^[A-Za-z0-9_-]+$/;

export function parseMessageId(text: string, what = "message id"): string {
  if (!ID.test(text)) throw new ValidationError("INVALID_OPTION", `invalid ${what} ${JSON.stringify(text)}: ids are positive integers`);
  return text;
}

export function parseJobState(text: string | null): JobState {
  if (text === null || text === "") return "all";
  if (!(JOB_STATES as readonly string[]).includes(text))
    throw new ValidationError("INVALID_OPTION", `invalid state ${JSON.stringify(text)}: one of ${JOB_STATES.join(", ")}`);
  return text as JobState;
}

/** `user.id=42` -> path ["user", "id"], value "42" (compared as text). */
export function parsePayloadFilter(text: string | null): JobFilter["payload"] {
  if (text === null || text.trim() === "") return null;
  const at = text.indexOf("=");
  const path = (at < 0 ? "" : text.slice(0, at)).trim().split(".");
  if (at < 0 || !path.every((segment) => PATH_SEGMENT.test(segment)))
    throw new ValidationError(
      "INVALID_OPTION",
      `invalid payload filter ${JSON.stringify(text)}: write path=value, the path's dot-separated keys of A-Z, a-z, 0-9, "_" and "-" (e.g. user.id=42)`,
    );
  return { path, value: text.slice(at + 1).trim() };
}

interface ListedRow {
  id: string;
  read_ct: number;
  enqueued_at: Date;
  job: string | null;
  state: string;
  preview: string | null;
  small_payload: unknown;
}

export async function listJobs(db: Queryable, filter: JobFilter): Promise<JobPage> {
  validateQueueName(filter.queue);
  const dead = filter.state === "dead" && !isDlqName(filter.queue);
  const queue = dead ? dlqName(filter.queue) : filter.queue;
  const state: sql.ListedState = filter.state === "dead" ? "all" : filter.state;
  const bounds = (await db.query(sql.idBounds(queue, state === "completed"))).rows[0] as { min_id: string | null; max_id: string | null };
  if (bounds.max_id === null || bounds.min_id === null) return { queue, rows: [], next: null, searchedDownTo: null };
  const top = filter.before === null ? BigInt(bounds.max_id) + 1n : BigInt(filter.before);
  const min = BigInt(bounds.min_id);
  const floor = top - BigInt(SCAN_WINDOW) > min ? top - BigInt(SCAN_WINDOW) : min;
  const result = await db.query(sql.listJobs(queue, state), [
    top.toString(),
    floor.toString(),
    filter.job,
    filter.payload?.path ?? null,
    filter.payload?.value ?? null,
    PAGE_SIZE + 1,
    queue,
  ]);
  const rows = (result.rows as ListedRow[]).map((row) => ({
    id: row.id,
    readCt: row.read_ct,
    enqueuedAt: row.enqueued_at,
    job: row.job,
    state: dead ? "dead" : row.state,
    preview: row.preview,
    smallPayload: row.small_payload,
  }));
  if (rows.length > PAGE_SIZE) return { queue, rows: rows.slice(0, PAGE_SIZE), next: rows[PAGE_SIZE - 1]!.id, searchedDownTo: null };
  const more = floor > min;
  return { queue, rows, next: more ? floor.toString() : null, searchedDownTo: more ? floor.toString() : null };
}

export interface JobDetail {
  queue: string;
  id: string;
  readCt: number;
  enqueuedAt: Date;
  lastReadAt: Date | null;
  vt: Date;
  archivedAt: Date | null;
  message: unknown;
  headers: Record<string, unknown> | null;
  state: string;
}

export interface JobFailure {
  attempt: number;
  outcome: string;
  error: { name?: string; message?: string; stack?: string; reason?: string };
  failedAt: Date;
}

export async function findJob(db: Queryable, queue: string, id: string): Promise<JobDetail | null> {
  validateQueueName(queue);
  const row = (await db.query(sql.findJob(queue), [parseMessageId(id), queue])).rows[0] as
    | {
        id: string;
        read_ct: number;
        enqueued_at: Date;
        last_read_at: Date | null;
        vt: Date;
        archived_at: Date | null;
        message: unknown;
        headers: Record<string, unknown> | null;
        state: string;
      }
    | undefined;
  if (!row) return null;
  return {
    queue,
    id: row.id,
    readCt: row.read_ct,
    enqueuedAt: row.enqueued_at,
    lastReadAt: row.last_read_at,
    vt: row.vt,
    archivedAt: row.archived_at,
    message: row.message,
    headers: row.headers,
    state: isDlqName(queue) ? "dead" : row.state,
  };
}

export async function jobFailures(db: Queryable, queue: string, id: string): Promise<JobFailure[]> {
  const result = await db.query(sql.JOB_FAILURES, [queue, id]);
  return (result.rows as Array<{ attempt: number; outcome: string; error: JobFailure["error"]; failed_at: Date }>).map((row) => ({
    attempt: row.attempt,
    outcome: row.outcome,
    error: row.error ?? {},
    failedAt: row.failed_at,
  }));
}

/** Makes a delayed message, or one waiting for its retry, visible now; false when it is running or gone. */
export async function runJobNow(db: Queryable, queue: string, id: string): Promise<boolean> {
  validateQueueName(queue);
  return (await db.query(sql.runJobNow(queue), [parseMessageId(id), queue])).rows.length > 0;
}

/** The states of watched messages of one queue (absent: deleted or dead-lettered). */
export async function watchedStates(db: Queryable, queue: string, ids: readonly string[]): Promise<Map<string, string>> {
  validateQueueName(queue);
  const result = await db.query(sql.watchedStates(queue), [ids, queue]);
  return new Map((result.rows as Array<{ id: string; state: string }>).map((row) => [row.id, isDlqName(queue) ? "dead" : row.state]));
}
