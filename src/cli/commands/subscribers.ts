import type { Command } from "commander";
import { Pgbus } from "../../bus.ts";
import { listBindings } from "../../events/bindings.ts";
import { loadJobsModule } from "../../jobs/registry.ts";
import { loadCliConfig, withPool } from "../context.ts";
import { formatTable, printJson, printLine } from "../output.ts";

export function registerSubscribers(program: Command): void {
  const subscribers = program.command("subscribers").description("the event bus's bindings: which pattern fills which subscriber queue");
  subscribers
    .command("list")
    .description("every binding (pattern -> queue) with the queue's depth")
    .option("--json", "print as JSON")
    .action(async (options: { json?: boolean }, command: Command) => {
      const config = await loadCliConfig(command);
      const bindings = await withPool(config, (pool) => listBindings(pool));
      if (options.json) return printJson(bindings);
      if (bindings.length === 0) return printLine("no bindings: no subscriber gets published events");
      printLine(
        formatTable(
          ["PATTERN", "QUEUE", "DEPTH"],
          bindings.map((binding) => [binding.pattern, binding.queue, binding.depth]),
        ),
      );
    });
  subscribers
    .command("remove <name>")
    .description("unbind a subscriber that no longer exists in the code (its queue ev_NAME, or --queue)")
    .option("--queue <queue>", "the subscriber's queue, when it is not ev_NAME")
    .option("--drop-queue", "also drop the queue and its DLQ (with the copies still in them)")
    .action(async (name: string, options: { queue?: string; dropQueue?: boolean }, command: Command) => {
      const config = await loadCliConfig(command);
      // The jobs module's subscribers are refused: the next migrate or consumer start would bind them again.
      const jobs = config.jobsModule ? (await loadJobsModule(config.jobsModule)).all() : [];
      const bus = new Pgbus({ connectionString: config.databaseUrl, jobs });
      try {
        const result = await bus.unsubscribe(name, { queue: options.queue, dropQueue: options.dropQueue ?? false });
        printLine(
          `unbound ${result.unbound.length === 0 ? "nothing" : result.unbound.join(", ")} from ${result.queue}` +
            (result.droppedQueue ? "; dropped the queue and its DLQ" : ""),
        );
      } finally {
        await bus.close();
      }
    });
}
