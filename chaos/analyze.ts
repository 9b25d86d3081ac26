import type pg from "pg";
import type { Fault } from "./faults.ts";

/** One recorded run (chaos_runs): a handler that started, whether or not it finished. */
export interface Run {
  /** `queue:msg_id`: message ids are per queue. */
  msgId: string;
  pid: number;
  attempt: number;
  startedAt: number;
  finishedAt: number | null;
}

export type Explanation = "worker kill" | "supervisor kill" | "PostgreSQL restart" | "worker freeze" | "connections silenced";

export interface Analysis {
  jobs: number;
  archived: number;
  stillQueued: number;
  deadLettered: number;
  /** Enqueued (`queue:msg_id`), never archived: still queued, dead-lettered, or gone. Must be 0. */
  lost: string[];
  runs: number;
  /** Messages whose handler started more than once. */
  repeated: number;
  /** Repeats by the fault their earlier run was in flight at. */
  explainedBy: Record<Explanation, number>;
  /** Repeats no fault explains: a live worker ran a job a second time. Must be empty. */
  unexplained: Array<{ msgId: string; runs: Run[] }>;
  /** For runs in flight on a killed worker: kill -> the redelivered run's start, in ms, by queue. */
  redeliveryMs: Record<string, number[]>;
  postgres: { downMs: number; firstRunAfterMs: number | null; firstAckAfterMs: number | null } | null;
}

/** Slack after pg_isready for failures that surface on connections the restart broke. */
const POSTGRES_SLACK_MS = 1_000;
/**
 * A run's start is the time PostgreSQL wrote its record; a handler that started just
 * before the SIGKILL can have its record land a moment after it (seen: 1 ms). The pid
 * must match too, so this cannot excuse a live worker running a job twice.
 */
const KILL_SLACK_MS = 100;
/**
 * A run is settled when its ack commits, not when its handler recorded its end: the ack
 * goes out in the next batch, a few milliseconds later (more on a loaded machine). A run
 * that finished this little before a fault may still have been unacked, so in flight.
 * Far below the chaos VT (2 s): a live worker repeating a finished run is still caught.
 */
export const ACK_SLACK_MS = 500;

/**
 * Whether `run` was in flight at `at`: started before it (the record may land up to
 * `startSlackMs` late) and not finished, acked, before it.
 */
export function inFlightAt(run: Run, at: number, startSlackMs: number): boolean {
  return run.startedAt <= at + startSlackMs && (run.finishedAt === null || run.finishedAt + ACK_SLACK_MS >= at);
}

async function loadRuns(db: pg.Pool): Promise<Map<string, Run[]>> {
  const result = await db.query<{ key: string; pid: number; attempt: number; started_at: Date; finished_at: Date | null }>(
    "SELECT queue || ':' || msg_id AS key, pid, attempt, started_at, finished_at FROM chaos_runs ORDER BY queue, msg_id, started_at, id",
  );
  const byMessage = new Map<string, Run[]>();
  for (const row of result.rows) {
    const run: Run = {
      msgId: row.key,
      pid: row.pid,
      attempt: row.attempt,
      startedAt: row.started_at.getTime(),
      finishedAt: row.finished_at?.getTime() ?? null,
    };
    const runs = byMessage.get(run.msgId);
    if (runs) runs.push(run);
    else byMessage.set(run.msgId, [run]);
  }
  return byMessage;
}

/**
 * Which fault, if any, accounts for `earlier` being run again as `later`: one that hit
 * while `earlier` was in flight (started before the fault, not finished before it) and
 * before `later` started. A run finished long before a fault is not excused by it.
 */
export function explain(earlier: Run, later: Run, faults: readonly Fault[]): Explanation | null {
  for (const fault of faults) {
    if (later.startedAt < fault.at) continue;
    if (fault.kind === "worker" && fault.pid === earlier.pid && inFlightAt(earlier, fault.at, KILL_SLACK_MS)) return "worker kill";
    if (fault.kind === "supervisor" && fault.childPids.includes(earlier.pid) && inFlightAt(earlier, fault.at, KILL_SLACK_MS))
      return "supervisor kill";
    // In flight at the restart: not finished before it went down, and started before it was
    // back (runs are recorded in PostgreSQL, so none starts while it is down; one that
    // started just after it came back can still lose its ack on a connection it broke).
    // A frozen worker's runs lapse while it lives: another worker may start them, and the
    // frozen run may even finish after it resumes (its outcome is fenced out). A run the
    // frozen worker starts after it resumed is not excused: it must not start what it lost.
    if (fault.kind === "freeze" && fault.pid === earlier.pid && inFlightAt(earlier, fault.at, KILL_SLACK_MS)) return "worker freeze";
    // Silenced connections lose the acks (and extensions) of runs in flight then: those
    // messages come back after their VT.
    if (fault.kind === "silence" && inFlightAt(earlier, fault.at, KILL_SLACK_MS)) return "connections silenced";
    if (
      fault.kind === "postgres" &&
      earlier.startedAt <= fault.upAt + POSTGRES_SLACK_MS &&
      (earlier.finishedAt === null || earlier.finishedAt + ACK_SLACK_MS >= fault.at)
    )
      return "PostgreSQL restart";
  }
  return null;
}

/** What the recorded runs say, given the faults: repeats excused by a fault, repeats not, redelivery times. */
export function classifyRuns(
  byMessage: ReadonlyMap<string, Run[]>,
  queues: readonly string[],
  faults: readonly Fault[],
): Pick<Analysis, "runs" | "repeated" | "explainedBy" | "unexplained" | "redeliveryMs"> {
  const explainedBy: Record<Explanation, number> = {
    "worker kill": 0,
    "supervisor kill": 0,
    "PostgreSQL restart": 0,
    "worker freeze": 0,
    "connections silenced": 0,
  };
  const unexplained: Analysis["unexplained"] = [];
  let runs = 0;
  let repeated = 0;
  for (const [msgId, list] of byMessage) {
    runs += list.length;
    if (list.length < 2) continue;
    repeated++;
    const reasons = list.slice(1).map((later, index) => explain(list[index]!, later, faults));
    if (reasons.some((reason) => reason === null)) unexplained.push({ msgId, runs: list });
    else explainedBy[reasons[0]!]++;
  }

  const redeliveryMs: Record<string, number[]> = Object.fromEntries(queues.map((queue) => [queue, []]));
  for (const fault of faults) {
    if (fault.kind !== "worker") continue;
    for (const [key, list] of byMessage) {
      const index = list.findIndex((run) => run.pid === fault.pid && inFlightAt(run, fault.at, KILL_SLACK_MS));
      const next = index >= 0 ? list[index + 1] : undefined;
      if (next && next.startedAt >= fault.at) redeliveryMs[key.slice(0, key.indexOf(":"))]?.push(next.startedAt - fault.at);
    }
  }
  return { runs, repeated, explainedBy, unexplained, redeliveryMs };
}

async function count(db: pg.Pool, text: string, values: unknown[] = []): Promise<number> {
  return Number(Object.values((await db.query(text, values)).rows[0] as object)[0]);
}

export async function analyze(
  db: pg.Pool,
  queues: readonly string[],
  expected: readonly string[],
  faults: readonly Fault[],
): Promise<Analysis> {
  const union = (prefix: string) =>
    queues.map((queue) => `SELECT '${queue}:' || msg_id AS key FROM pgmq.${prefix}${queue}`).join(" UNION ALL ");
  const archivedIds = new Set((await db.query<{ key: string }>(union("a_"))).rows.map((row) => row.key));
  const lost = expected.filter((id) => !archivedIds.has(id));
  const stillQueued = await count(db, `SELECT count(*) FROM (${union("q_")}) q`);
  const deadLettered = await count(
    db,
    `SELECT count(*) FROM (${queues.map((queue) => `SELECT 1 FROM pgmq.q_${queue}_dlq`).join(" UNION ALL ")}) d`,
  );

  const byMessage = await loadRuns(db);
  const { runs, repeated, explainedBy, unexplained, redeliveryMs } = classifyRuns(byMessage, queues, faults);

  const restart = faults.find((fault) => fault.kind === "postgres");
  let postgres: Analysis["postgres"] = null;
  if (restart) {
    const firstRun = (
      await db.query<{ at: Date | null }>("SELECT min(started_at) AS at FROM chaos_runs WHERE started_at >= $1", [new Date(restart.upAt)])
    ).rows[0]?.at;
    const firstAck = (
      await db.query<{ at: Date | null }>(
        `SELECT min(archived_at) AS at FROM (${queues.map((q) => `SELECT archived_at FROM pgmq.a_${q}`).join(" UNION ALL ")}) a WHERE archived_at >= $1`,
        [new Date(restart.upAt)],
      )
    ).rows[0]?.at;
    postgres = {
      downMs: restart.upAt - restart.at,
      firstRunAfterMs: firstRun ? firstRun.getTime() - restart.upAt : null,
      firstAckAfterMs: firstAck ? firstAck.getTime() - restart.upAt : null,
    };
  }

  return {
    jobs: expected.length,
    archived: archivedIds.size,
    stillQueued,
    deadLettered,
    lost,
    runs,
    repeated,
    explainedBy,
    unexplained,
    redeliveryMs,
    postgres,
  };
}
