import type { Command } from "commander";
import { type ProcessRecord, listProcesses } from "../../process/process-store.ts";
import { queueOverview } from "../../queue/admin.ts";
import { type QueueState, queueStates } from "../../queue/breaker.ts";
import { loadCliConfig, withPool } from "../context.ts";
import { formatAge, formatTable, printJson, printLine } from "../output.ts";

function roleLabel(process: ProcessRecord): string {
  const indent = process.supervisorId ? "  " : "";
  if (process.role === "maintenance") return `${indent}maintenance (${process.stats["maintenanceActive"] ? "active" : "standby"})`;
  return `${indent}${process.role}`;
}

function processed(process: ProcessRecord): number | null {
  const value = process.stats["processed"];
  return typeof value === "number" ? value : null;
}

export function registerStatus(program: Command): void {
  program
    .command("status")
    .description("live processes (from their heartbeats) and queues (depth, visible, oldest, throughput)")
    .option("--json", "print as JSON")
    .action(async (options: { json?: boolean }, command: Command) => {
      const config = await loadCliConfig(command);
      const { processes, queues, states } = await withPool(config, async (pool) => ({
        processes: await listProcesses(pool),
        queues: await queueOverview(pool),
        states: await queueStates(pool),
      }));
      if (options.json) return printJson({ processes, queues, queueStates: states });
      printLine("PROCESSES");
      printLine(
        processes.length === 0
          ? "no live processes (is `pgbus start` running?)"
          : formatTable(
              ["ROLE", "HOST", "PID", "MODE", "CAPACITY", "BUSY", "PROCESSED", "LAST BEAT", "QUEUES"],
              processes.map((p) => [
                roleLabel(p),
                p.host,
                p.pid,
                p.executionMode,
                p.capacity,
                p.busy,
                processed(p),
                `${formatAge(p.beatAgeSec)} ago`,
                p.queues.join(",") || null,
              ]),
            ),
      );
      const supervisors = processes.filter((p) => p.role === "supervisor").length;
      const workerChildren = processes.filter((p) => p.role === "worker" || p.role === "consumer").length;
      const schedulers = processes.filter((p) => p.role === "scheduler").length;
      if (supervisors > 0) {
        printLine(
          `connections: each host holds 2 per worker or consumer process + 3 (supervisor LISTEN and pool, maintenance)` +
            ` + 1 with recurring tasks (scheduler); here about ${2 * workerChildren + 3 * supervisors + schedulers} across ${supervisors} host(s)`,
        );
      }
      printLine();
      printLine("QUEUES");
      printLine(
        queues.length === 0
          ? "no queues"
          : formatTable(
              ["QUEUE", "DEPTH", "VISIBLE", "OLDEST", "ARCHIVED/MIN", "DLQ"],
              queues.map((q) => [q.name, q.depth, q.visible, formatAge(q.oldestAgeSec), q.archivedLastMinute, q.dlqDepth]),
            ),
      );
      if (states.length > 0) {
        printLine();
        printLine("PAUSED QUEUES AND CIRCUIT BREAKERS");
        printLine(formatTable(["QUEUE", "PAUSED", "BY", "BREAKER", "FAILURES", "BACK-OFF", "UNTIL"], states.map(stateRow)));
      }
    });
}

function stateRow(state: QueueState): Array<string | number | null> {
  const breaker = state.breaker;
  return [
    state.queue,
    state.paused ? "yes" : "no",
    state.pausedBy,
    breaker ? breaker.state.replace("_", "-") : "none",
    breaker ? `${breaker.consecutiveFailures}/${breaker.threshold}` : null,
    breaker?.backoffMs != null ? `${breaker.backoffMs} ms` : null,
    breaker?.until ? breaker.until.toISOString() : null,
  ];
}
