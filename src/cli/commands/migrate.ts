import type { Command } from "commander";
import { migrate } from "../../schema/migrator.ts";
import { loadCliConfig, withPool } from "../context.ts";
import { printJson, printLine } from "../output.ts";

export function registerMigrate(program: Command): void {
  program
    .command("migrate")
    .description("create or update the pgbus and pgmq schemas (idempotent, safe from many processes at once)")
    .option("--json", "print the result as JSON")
    .action(async (options: { json?: boolean }, command: Command) => {
      const config = await loadCliConfig(command);
      const result = await withPool(config, (pool) => migrate(pool));
      if (options.json) return printJson(result);
      if (result.applied.length === 0) printLine("schema is up to date");
      for (const name of result.applied) printLine(`applied ${name}`);
      if (result.pgmqExtension) printLine("using the installed pgmq extension");
    });
}
