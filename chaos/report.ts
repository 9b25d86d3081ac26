import type { Analysis } from "./analyze.ts";
import type { FaultLog } from "./faults.ts";
import type { ChaosProfile } from "./profiles.ts";

export interface RunFacts {
  profile: ChaosProfile;
  seed: number;
  wallMs: number;
  drained: boolean;
  childRestarts: number;
  leakedPids: number[];
  logFile: string;
}

/** Who can pick up a killed worker's messages, which bounds how soon they run again. */
const SERVED_BY: Record<string, string> = {
  chaos_io: "both workers read it: the survivor takes it after the VT",
  chaos_cpu: "only the threads worker reads it: it waits for that worker's re-fork",
};

const seconds = (ms: number | null | undefined): string => (ms === null || ms === undefined ? "-" : `${(ms / 1000).toFixed(2)} s`);

function percentile(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/** What makes the run fail: a lost job, a repeat no fault explains, a leaked process, a drain that timed out. */
export function failures(analysis: Analysis, facts: RunFacts): string[] {
  const problems: string[] = [];
  if (analysis.lost.length > 0) problems.push(`${analysis.lost.length} job(s) lost (first ids: ${analysis.lost.slice(0, 10).join(", ")})`);
  for (const { msgId, runs } of analysis.unexplained.slice(0, 10)) {
    problems.push(
      `message ${msgId} ran ${runs.length} times with no fault in between: ${runs.map((r) => `pid ${r.pid} at ${new Date(r.startedAt).toISOString()}`).join("; ")}`,
    );
  }
  if (analysis.unexplained.length > 10) problems.push(`... and ${analysis.unexplained.length - 10} more unexplained repeats`);
  if (facts.leakedPids.length > 0) problems.push(`processes still running after the supervisor stopped: ${facts.leakedPids.join(", ")}`);
  if (!facts.drained) problems.push(`not every job was archived within ${facts.profile.drainTimeoutSec} s of the window's end`);
  return problems;
}

/** The report as a Markdown table, so it can be pasted as is. */
export function formatReport(analysis: Analysis, log: FaultLog, facts: RunFacts): string {
  const kills = log.faults.filter((fault) => fault.kind === "worker").length;
  const supervisorKills = log.faults.filter((fault) => fault.kind === "supervisor").length;
  const ok = (good: boolean) => (good ? "ok" : "FAIL");
  const { profile } = facts;
  const rows: Array<[string, string, string]> = [
    [
      "jobs lost (must be 0)",
      `${analysis.lost.length} of ${analysis.jobs} (archived ${analysis.archived}, still queued ${analysis.stillQueued}, dead-lettered ${analysis.deadLettered})`,
      ok(analysis.lost.length === 0),
    ],
    ["jobs run more than once", `${analysis.repeated} (runs recorded: ${analysis.runs})`, ok(analysis.unexplained.length === 0)],
    ["  ... first run in flight at a worker SIGKILL", String(analysis.explainedBy["worker kill"]), ""],
    ["  ... first run in flight at the supervisor SIGKILL", String(analysis.explainedBy["supervisor kill"]), ""],
    ["  ... first run in flight at the PostgreSQL restart", String(analysis.explainedBy["PostgreSQL restart"]), ""],
    ["  ... first run in flight on a worker frozen past its VT", String(analysis.explainedBy["worker freeze"]), ""],
    ["  ... first run in flight when every connection went silent", String(analysis.explainedBy["connections silenced"]), ""],
    ["  ... not explained by any fault (must be 0)", String(analysis.unexplained.length), ok(analysis.unexplained.length === 0)],
    ["worker children SIGKILLed", `${kills} (${log.skippedKills} ticks found no live worker)`, ""],
    ["supervisor SIGKILLed and restarted", String(supervisorKills), ""],
    [
      "worker children frozen past the VT (SIGSTOP, then SIGCONT)",
      String(log.faults.filter((fault) => fault.kind === "freeze").length),
      "",
    ],
    ["every connection silenced", String(log.faults.filter((fault) => fault.kind === "silence").length), ""],
    ["children re-forked by the supervisor", String(facts.childRestarts), ""],
    ...Object.entries(analysis.redeliveryMs).map(([queue, times]): [string, string, string] => [
      `longest kill -> redelivered run start, ${queue}`,
      `${seconds(percentile(times, 1))} (median ${seconds(percentile(times, 0.5))}, ${times.length} runs redelivered; ${SERVED_BY[queue] ?? ""})`,
      "",
    ]),
    ["PostgreSQL restart: restart issued -> pg_isready", seconds(analysis.postgres?.downMs), ""],
    [
      "resume after PostgreSQL came back",
      `first run ${seconds(analysis.postgres?.firstRunAfterMs)}, first ack ${seconds(analysis.postgres?.firstAckAfterMs)} after pg_isready`,
      "",
    ],
    ["leaked processes", String(facts.leakedPids.length), ok(facts.leakedPids.length === 0)],
    [
      "wall time / throughput",
      `${seconds(facts.wallMs)} / ${Math.round(analysis.archived / (facts.wallMs / 1000))} jobs/s (jobs spread over ${profile.spreadSec} s)`,
      ok(facts.drained),
    ],
  ];
  const header = `pgbus chaos: profile ${profile.name}, seed ${facts.seed}, ${profile.jobs} jobs, VT ${profile.visibilityTimeoutSec} s, workers: async x20 + threads x4`;
  const table = [
    "| check | result | |",
    "|---|---|---|",
    ...rows.map(([check, result, verdict]) => `| ${check} | ${result} | ${verdict} |`),
  ];
  return [header, "", ...table, "", `log: ${facts.logFile}`].join("\n");
}
