/**
 * The `pgbus` program: every command wired up, without running anything, so tests can
 * inspect it in-process. main.ts runs it.
 */
import { readFileSync } from "node:fs";
import { Command } from "commander";
import { registerCancel } from "./commands/cancel.ts";
import { registerDev } from "./commands/dev.ts";
import { registerDlq } from "./commands/dlq.ts";
import { registerDoctor } from "./commands/doctor.ts";
import { registerEnqueue } from "./commands/enqueue.ts";
import { registerMigrate } from "./commands/migrate.ts";
import { registerQueues } from "./commands/queues.ts";
import { registerSubscribers } from "./commands/subscribers.ts";
import { registerRecurring } from "./commands/recurring.ts";
import { registerStart } from "./commands/start.ts";
import { registerStatus } from "./commands/status.ts";
import { registerWeb } from "./commands/web.ts";

function packageVersion(): string {
  // ../../package.json from both src/cli/program.ts and dist/cli/program.js.
  const text = readFileSync(new URL("../../package.json", import.meta.url), "utf8");
  return (JSON.parse(text) as { version: string }).version;
}

export function buildProgram(): Command {
  const program = new Command("pgbus")
    .description("PostgreSQL-native job queue: run workers, inspect queues, manage dead letters")
    .version(packageVersion(), "-V, --version", "print the pgbus version")
    .option("--config <path>", "config file (default: pgbus.config.{js,mjs,json} in the working directory, or PGBUS_CONFIG)")
    .option("--database-url <url>", "PostgreSQL URL (default: DATABASE_URL, or databaseUrl in the config file)")
    .showSuggestionAfterError()
    // Every subcommand's --help lists --config and --database-url too (inherited by subcommands).
    .configureHelp({ showGlobalOptions: true })
    // Throw instead of exiting, so main() decides the exit code in one place.
    .exitOverride();
  registerStart(program);
  registerDev(program);
  registerMigrate(program);
  registerStatus(program);
  registerQueues(program);
  registerSubscribers(program);
  registerEnqueue(program);
  registerDlq(program);
  registerCancel(program);
  registerRecurring(program);
  registerWeb(program);
  registerDoctor(program);
  return program;
}

/** One line for the user: the message, with a hint for the failures people hit first. */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  // Node's happy-eyeballs connect failure is an AggregateError with an empty message.
  const inner = error instanceof AggregateError && error.message === "" ? error.errors[0] : undefined;
  const message = inner instanceof Error ? inner.message : error.message || error.name;
  const code = (error as { code?: unknown }).code ?? (inner as { code?: unknown } | undefined)?.code;
  if ((code === "42P01" || code === "3F000") && !message.includes("pgbus migrate"))
    return `${message} (is the schema there? run \`pgbus migrate\`)`;
  if (code === "ECONNREFUSED") return `cannot reach PostgreSQL: ${message} (check DATABASE_URL or --database-url)`;
  return message;
}
