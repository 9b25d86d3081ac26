import type { ResolvedConfig } from "../config/schema.ts";
import type { JobMetricsEntry } from "../observability/job-metrics.ts";

/**
 * The protocol between the supervisor and its children: one discriminated union per
 * direction, sent over the IPC channel of child_process.fork (JSON serialisation, so
 * every field is plain data).
 */

/**
 * What a child does. A discriminated union so later roles (scheduler, consumers, outbox)
 * are one more variant each; a worker names its entry in `config.workers`.
 */
export type ChildRole = { kind: "worker"; index: number } | { kind: "consumer" } | { kind: "maintenance" } | { kind: "scheduler" };

export type ParentMessage =
  /** The first message a child receives: everything it needs to boot. */
  | { type: "init"; role: ChildRole; config: ResolvedConfig; supervisorId: string }
  /** Stop claiming, finish in-flight work (up to shutdownTimeoutMs), then exit 0. */
  | { type: "stop" }
  /** A NOTIFY the supervisor's one LISTEN connection received, fanned out to every child. */
  | { type: "notify"; channel: string; payload: string }
  /** The supervisor's LISTEN (re)connected: notifications may have been missed, so look now. */
  | { type: "listening" };

export interface ChildStats {
  processed: number;
  failed: number;
  retried: number;
  deadLettered: number;
  busy: number;
  /** Resident memory, in MB. */
  rssMb: number;
  maintenanceActive?: boolean;
}

/** What the child's row in pgbus.processes shows (see process-store.ts ProcessBeat). */
export interface ChildSnapshot {
  processId: string;
  role: string;
  executionMode: string | null;
  capacity: number | null;
  busy: number;
  queues: string[];
  stats: Record<string, unknown>;
  /**
   * The jobs counted since the last beat (worker and consumer children): the supervisor
   * adds them to pgbus.job_metrics on its own connection, so counting costs a child no
   * connection of its own.
   */
  jobMetrics?: JobMetricsEntry[];
}

export type ChildMessage =
  /** Booted: the worker claims, or the maintenance runs. */
  | { type: "ready"; processId: string; pid: number; executionMode: string | null; capacity: number | null; queues: string[] }
  /**
   * Sent every heartbeat interval: the supervisor writes the child's row in pgbus.processes
   * from it (one connection for the whole host) and logs summaries without asking the
   * database. A child that stops sending (hung) gets no fresh row and is reaped as stale.
   */
  | { type: "stats"; stats: ChildStats; snapshot: ChildSnapshot }
  /** About to stop and exit with RECYCLE_EXIT_CODE: the supervisor re-forks at once, without backoff. */
  | { type: "recycle"; reason: string }
  /** About to exit with BOOT_FAILURE_EXIT_CODE: the configuration error, for the supervisor to report. */
  | { type: "boot-failed"; error: string };

/** A child that recycles itself (job count or memory limit) exits with this code. */
export const RECYCLE_EXIT_CODE = 75;
/**
 * A child that could not boot because of its configuration (a jobs module that does not load
 * or exports no jobs, an invalid option: any PgbusError) exits with this code (EX_CONFIG).
 * Re-forking cannot fix that, so on a slot's first boot the supervisor stops with the error.
 * Other boot failures (the database dropped the connection) exit 1 and are re-forked.
 */
export const BOOT_FAILURE_EXIT_CODE = 78;

export function roleName(role: ChildRole): string {
  return role.kind === "worker" ? `worker ${role.index}` : role.kind;
}

export function isParentMessage(value: unknown): value is ParentMessage {
  const type = (value as { type?: unknown } | null)?.type;
  return type === "init" || type === "stop" || type === "notify" || type === "listening";
}

export function isChildMessage(value: unknown): value is ChildMessage {
  const type = (value as { type?: unknown } | null)?.type;
  return type === "ready" || type === "stats" || type === "recycle" || type === "boot-failed";
}

/** One role's child as the supervisor's /readyz sees it. */
export interface ChildHealth {
  role: string;
  /** Forked, reported ready and not exited. */
  ready: boolean;
  /** Since its last beat; null before the first. */
  beatAgeMs: number | null;
}
