import type { Command } from "commander";
import { queueOverview } from "../../queue/admin.ts";
import { loadCliConfig, withPool } from "../context.ts";
import { formatTable, printJson, printLine } from "../output.ts";

export function registerQueues(program: Command): void {
  program
    .command("queues")
    .description("list queues with their depth, visible messages and dead-letter depth")
    .option("--json", "print as JSON")
    .action(async (options: { json?: boolean }, command: Command) => {
      const config = await loadCliConfig(command);
      const queues = await withPool(config, (pool) => queueOverview(pool));
      if (options.json) return printJson(queues.map(({ name, depth, visible, dlqDepth }) => ({ name, depth, visible, dlqDepth })));
      if (queues.length === 0) return printLine("no queues");
      printLine(
        formatTable(
          ["QUEUE", "DEPTH", "VISIBLE", "DLQ"],
          queues.map((q) => [q.name, q.depth, q.visible, q.dlqDepth]),
        ),
      );
    });
}
