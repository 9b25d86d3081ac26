import type { Command } from "commander";
import { hostname } from "node:os";
import { queueOverview } from "../../queue/admin.ts";
import { pauseQueue, resumeQueue } from "../../queue/pause.ts";
import { loadCliConfig, withPool } from "../context.ts";
import { formatTable, printJson, printLine } from "../output.ts";

export function registerQueues(program: Command): void {
  const queues = program
    .command("queues")
    .description("list queues with their depth, visible messages and dead-letter depth")
    .option("--json", "print as JSON")
    .action(async (options: { json?: boolean }, command: Command) => {
      const config = await loadCliConfig(command);
      const queues = await withPool(config, (pool) => queueOverview(pool));
      if (options.json)
        return printJson(queues.map(({ name, depth, visible, dlqDepth, paused }) => ({ name, depth, visible, dlqDepth, paused })));
      if (queues.length === 0) return printLine("no queues");
      printLine(
        formatTable(
          ["QUEUE", "DEPTH", "VISIBLE", "DLQ", "STATE"],
          queues.map((q) => [q.name, q.depth, q.visible, q.dlqDepth, q.paused ? "paused" : "active"]),
        ),
      );
    });
  queues
    .command("pause <queue>")
    .description("stop every worker from claiming from QUEUE (running jobs finish; enqueues are accepted)")
    .action(async (queue: string, _options: unknown, command: Command) => {
      const config = await loadCliConfig(command);
      const since = await withPool(config, (pool) => pauseQueue(pool, queue, `cli:${hostname()}`));
      printLine(`paused ${queue} (since ${since.toISOString()})`);
    });
  queues
    .command("resume <queue>")
    .description("let workers claim from QUEUE again, at once")
    .action(async (queue: string, _options: unknown, command: Command) => {
      const config = await loadCliConfig(command);
      const { resumed, breakerWas } = await withPool(config, (pool) => resumeQueue(pool, queue));
      const breaker = breakerWas === "open" || breakerWas === "half_open" ? " and closed its circuit breaker" : "";
      printLine(resumed ? `resumed ${queue}${breaker}` : `${queue} was not paused`);
    });
}
