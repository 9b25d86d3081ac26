import type { Queryable } from "../db/queryable.ts";
import { SWEEP_LIMITS } from "../queue/limits-sql.ts";
import * as sql from "./sql.ts";

/**
 * pgbus.processes and the maintenance's maintenance, as noun-verb operations of one
 * statement each. Heartbeat, maintenance and `pgbus status` reach the database only here.
 */

/** What a process reports about itself on every heartbeat. */
export interface ProcessBeat {
  id: string;
  supervisorId: string | null;
  role: string;
  host: string;
  pid: number;
  executionMode: string | null;
  capacity: number | null;
  busy: number;
  queues: string[];
  stats: Record<string, unknown>;
}

export interface ProcessRecord extends ProcessBeat {
  startedAt: Date;
  lastBeatAt: Date;
  /** Seconds since the last heartbeat, by the database's clock. */
  beatAgeSec: number;
}

interface ProcessRow {
  id: string;
  supervisor_id: string | null;
  role: string;
  host: string;
  pid: number;
  execution_mode: string | null;
  capacity: number | null;
  busy: number;
  queues: string[];
  stats: Record<string, unknown>;
  started_at: Date;
  last_beat_at: Date;
  beat_age_sec: number;
}

export interface ReapedProcess {
  id: string;
  role: string;
  host: string;
  pid: number;
}

async function count(db: Queryable, text: string, values: unknown[]): Promise<number> {
  const result = await db.query(text, values);
  return (result.rows[0] as { count: number } | undefined)?.count ?? 0;
}

export async function upsertProcess(db: Queryable, beat: ProcessBeat): Promise<void> {
  await db.query(sql.UPSERT_PROCESS, [
    beat.id,
    beat.supervisorId,
    beat.role,
    beat.host,
    beat.pid,
    beat.executionMode,
    beat.capacity,
    beat.busy,
    beat.queues,
    JSON.stringify(beat.stats),
  ]);
}

export async function deleteProcess(db: Queryable, id: string): Promise<void> {
  await db.query(sql.DELETE_PROCESS, [id]);
}

/** A supervisor's row and every row of its children. */
export async function deleteProcessTree(db: Queryable, supervisorId: string): Promise<void> {
  await db.query(sql.DELETE_PROCESS_TREE, [supervisorId]);
}

export async function listProcesses(db: Queryable): Promise<ProcessRecord[]> {
  const result = await db.query(sql.LIST_PROCESSES);
  return (result.rows as ProcessRow[]).map((row) => ({
    id: row.id,
    supervisorId: row.supervisor_id,
    role: row.role,
    host: row.host,
    pid: row.pid,
    executionMode: row.execution_mode,
    capacity: row.capacity,
    busy: row.busy,
    queues: row.queues,
    stats: row.stats,
    startedAt: row.started_at,
    lastBeatAt: row.last_beat_at,
    beatAgeSec: row.beat_age_sec,
  }));
}

export async function reapStaleProcesses(db: Queryable, staleAfterMs: number): Promise<ReapedProcess[]> {
  return (await db.query(sql.REAP_STALE_PROCESSES, [staleAfterMs])).rows as ReapedProcess[];
}

/** Deletes archived messages older than `hours`, batch by batch; returns how many. */
export async function pruneArchive(db: Queryable, queue: string, hours: number, batchSize = 10_000): Promise<number> {
  let total = 0;
  for (;;) {
    const deleted = await count(db, sql.pruneArchive(queue), [hours, batchSize]);
    total += deleted;
    if (deleted < batchSize) return total;
  }
}

export function pruneFailedJobs(db: Queryable, hours: number): Promise<number> {
  return count(db, sql.PRUNE_FAILED_JOBS, [hours]);
}

export function pruneFinishedBatches(db: Queryable, hours: number): Promise<number> {
  return count(db, sql.PRUNE_FINISHED_BATCHES, [hours]);
}

export function pruneProcessedEvents(db: Queryable, hours: number): Promise<number> {
  return count(db, sql.PRUNE_PROCESSED_EVENTS, [hours]);
}

/** Drops dead concurrency slots and wakes the waiters their keys have room for; returns how many it woke. */
export async function sweepLimits(db: Queryable): Promise<number> {
  const result = await db.query(SWEEP_LIMITS);
  return (result.rows[0] as { woken: number }).woken;
}

export async function ping(db: Queryable): Promise<void> {
  await db.query(sql.PING);
}
