import type { Command } from "commander";
import { type LoadConfigFlags, type LoadedConfig, loadConfig } from "../../config/load.ts";
import { MISSING_DATABASE_URL } from "../../config/schema.ts";
import { DEFAULT_EMBEDDED_DIR, type EmbeddedPostgres, startEmbeddedPostgres } from "../../embedded/postgres.ts";
import { ValidationError } from "../../errors.ts";
import type { GlobalOptions } from "../context.ts";
import { supervise } from "./start.ts";

interface DevOptions {
  executionMode?: string;
  queues?: string;
  jobsModule?: string;
  logLevel?: string;
  dataDir: string;
  port?: string;
}

/** Whether loading failed only because no database URL was given anywhere. */
function onlyMissingDatabaseUrl(error: unknown): boolean {
  return (
    error instanceof ValidationError &&
    error.message.split("\n").every((line) => line.includes("databaseUrl") && line.includes(MISSING_DATABASE_URL))
  );
}

/**
 * `pgbus dev`: local development in one command. With a database URL (DATABASE_URL,
 * --database-url or the config file's databaseUrl) it is `pgbus start` on it; without one
 * it first starts an embedded PostgreSQL (data in .pgbus/postgres) and stops it after the
 * supervisor, on Ctrl-C, or when this process dies. The supervisor migrates before it
 * forks the config's workers.
 */
export function registerDev(program: Command): void {
  program
    .command("dev")
    .description(
      "local development: an embedded PostgreSQL when no database URL is given, migrations, and the supervisor with the config's workers",
    )
    .option("--execution-mode <mode>", "async, threads or fiber (an alias of async); per-worker settings in the config win")
    .option("--queues <dsl>", 'workers as a queue DSL, replacing the config\'s: "critical: 5; default, mailers: 10; *: 2"')
    .option("--jobs-module <path>", "module exporting the job definitions")
    .option("--log-level <level>", "debug, info, warn or error")
    .option("--data-dir <path>", "where the embedded PostgreSQL keeps its data (one folder per major version)", DEFAULT_EMBEDDED_DIR)
    .option("--port <port>", "port of the embedded PostgreSQL (default: a free one)")
    .action(async (options: DevOptions, command: Command) => {
      const globals = command.optsWithGlobals<GlobalOptions>();
      const flags: LoadConfigFlags = {
        executionMode: options.executionMode,
        queues: options.queues,
        jobsModule: options.jobsModule,
        logLevel: options.logLevel,
        databaseUrl: globals.databaseUrl,
      };
      let embedded: EmbeddedPostgres | undefined;
      let config: LoadedConfig;
      try {
        config = await loadConfig({ configPath: globals.config, flags });
      } catch (error) {
        if (!onlyMissingDatabaseUrl(error)) throw error;
        const port = options.port === undefined ? undefined : Number(options.port);
        if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65_536)) {
          throw new ValidationError("INVALID_OPTION", `--port must be a TCP port (1-65535), got ${JSON.stringify(options.port)}`);
        }
        embedded = await startEmbeddedPostgres({ dir: options.dataDir, ...(port !== undefined ? { port } : {}) });
        process.stderr.write(`pgbus dev: DATABASE_URL=${embedded.url()} (psql "${embedded.url()}" to look inside)\n`);
        config = await loadConfig({ configPath: globals.config, flags: { ...flags, databaseUrl: embedded.url() } });
      }
      let code: number;
      try {
        code = await supervise(config);
      } finally {
        await embedded?.stop();
      }
      if (embedded) process.stderr.write("pgbus dev: embedded PostgreSQL stopped\n");
      process.exit(code);
    });
}
