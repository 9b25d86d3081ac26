import type { Command } from "commander";
import { Pgbus } from "../../bus.ts";
import type { JobDefinition } from "../../jobs/define.ts";
import { loadJobsModule } from "../../jobs/registry.ts";
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
      // With a jobs module, migrate also makes its jobs' queues and binds its subscribers, so
      // events published before the first `pgbus start` reach them.
      const jobs = config.jobsModule ? (await loadJobsModule(config.jobsModule)).all() : null;
      const result = jobs
        ? await withBus(config.databaseUrl, jobs, (bus) => bus.migrate())
        : await withPool(config, (pool) => migrate(pool));
      if (options.json) return printJson(result);
      if (result.applied.length === 0) printLine("schema is up to date");
      for (const name of result.applied) printLine(`applied ${name}`);
      if (result.pgmqExtension) printLine("using the installed pgmq extension");
    });
}

async function withBus<T>(databaseUrl: string, jobs: JobDefinition[], work: (bus: Pgbus) => Promise<T>): Promise<T> {
  const bus = new Pgbus({ connectionString: databaseUrl, jobs });
  try {
    return await work(bus);
  } finally {
    await bus.close();
  }
}
