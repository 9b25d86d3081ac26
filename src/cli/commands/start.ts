import { type Command, Option } from "commander";
import { createConsoleLogger } from "../../logger.ts";
import { ONLY_ROLES, ONLY_ROLE_ALIASES, type OnlyRoles } from "../../process/roles.ts";
import { Supervisor } from "../../process/supervisor.ts";
import { hasRecurringTasks } from "../../process/scheduler.ts";
import { loadCliConfig } from "../context.ts";
import type { LoadedConfig } from "../../config/load.ts";
import { isSubscriberDefinition } from "../../events/subscriber.ts";
import { loadJobsModule } from "../../jobs/registry.ts";
import { ValidationError } from "../../errors.ts";
import type { Logger } from "../../logger.ts";
import { createHealthHandler } from "../../web/health.ts";
import { createMetricsHandler } from "../../web/metrics.ts";
import { type HealthServer, startHealthServer } from "../../web/health-server.ts";

/** A second SIGINT/SIGTERM within this window counts as the same request. */
const SAME_SIGNAL_WINDOW_MS = 1_000;

interface StartOptions {
  executionMode?: string;
  queues?: string;
  jobsModule?: string;
  logLevel?: string;
  only?: OnlyRoles;
  healthPort?: string;
  healthHost?: string;
}

/** --health-port / --health-host over the config's `health`. */
function healthOption(config: LoadedConfig, options: StartOptions): LoadedConfig["health"] {
  if (options.healthPort === undefined) {
    if (options.healthHost !== undefined) throw new ValidationError("INVALID_OPTION", "--health-host needs --health-port");
    return config.health;
  }
  const port = Number(options.healthPort);
  if (!/^\d+$/.test(options.healthPort) || port > 65_535) {
    throw new ValidationError("INVALID_OPTION", `--health-port must be a port number 0-65535, got ${JSON.stringify(options.healthPort)}`);
  }
  return { port, host: options.healthHost ?? config.health?.host ?? "127.0.0.1" };
}

/** The opt-in /livez and /readyz of the supervisor; null when not configured. */
async function serveHealth(config: LoadedConfig, supervisor: Supervisor, logger: Logger): Promise<(() => Promise<void>) | null> {
  if (!config.health) return null;
  const { port, host } = config.health;
  const handler = createHealthHandler({
    connectionString: config.databaseUrl,
    children: () => supervisor.children(),
    staleAfterMs: config.staleProcessAfterMs,
  });
  const metrics = createMetricsHandler({ connectionString: config.databaseUrl });
  const close = async (): Promise<void> => {
    await handler.close();
    await metrics.close();
  };
  let server: HealthServer;
  try {
    server = await startHealthServer({ health: handler, metrics }, config.health);
  } catch (error) {
    await close();
    const why = error instanceof Error ? error.message : String(error);
    throw new ValidationError(
      "INVALID_OPTION",
      `the health port ${port} on ${host} cannot be opened (${why}); choose another health.port / --health-port`,
    );
  }
  logger.info({ host, port: server.port }, "health endpoints listening: /livez, /readyz and /metrics");
  return async () => {
    await server.close();
    await close();
  };
}

/**
 * Loads and checks the jobs module before anything is forked, so a wrong path, a module
 * that throws at import, TypeScript without a loader or a module exporting no jobs fails
 * `pgbus start` at once with the error and its fix, instead of every child failing to boot.
 * Resolves whether it exports event subscribers (a consumer child is then needed).
 */
async function checkJobsModule(jobsModule: string | undefined, needed: boolean): Promise<boolean> {
  if (jobsModule === undefined || !needed) return false;
  return (await loadJobsModule(jobsModule)).all().some(isSubscriberDefinition);
}

export function registerStart(program: Command): void {
  program
    .command("start")
    .description(
      "run the supervisor: one process per worker entry, a consumer for event subscribers, and a maintenance process, re-forked if they die",
    )
    .option("--execution-mode <mode>", "async, threads or fiber (an alias of async); per-worker settings in the config win")
    .option("--queues <dsl>", 'workers as a queue DSL, replacing the config\'s: "critical: 5; default, mailers: 10; *: 2"')
    .option("--jobs-module <path>", "module exporting the job definitions")
    .option("--log-level <level>", "debug, info, warn or error")
    .option("--health-port <port>", "serve /livez, /readyz and /metrics on this port (0: any free port; the log says which)")
    .option("--health-host <host>", "address for --health-port (default 127.0.0.1)")
    .addOption(
      new Option("--only <roles>", "run only these roles (dispatcher: an alias of maintenance)").choices([
        ...ONLY_ROLES,
        ...Object.keys(ONLY_ROLE_ALIASES),
      ]),
    )
    .action(async (options: StartOptions, command: Command) => {
      const config = await loadCliConfig(command, {
        executionMode: options.executionMode,
        queues: options.queues,
        jobsModule: options.jobsModule,
        logLevel: options.logLevel,
      });
      process.exit(await supervise({ ...config, health: healthOption(config, options) }, options.only));
    });
}

/**
 * Runs the supervisor until SIGTERM/SIGINT (graceful; a second one later stops at once) or
 * SIGQUIT (at once); resolves with the exit code. `pgbus start` and `pgbus dev` share it.
 */
export async function supervise(config: LoadedConfig, only?: OnlyRoles): Promise<number> {
  const logger = createConsoleLogger(config.logLevel, { role: "supervisor", pid: process.pid });
  const roles = only && (ONLY_ROLE_ALIASES[only] ?? only);
  let fatal: Error | null = null;
  let onFatal: (error: Error) => void = () => {};
  const supervisor = new Supervisor({
    config,
    only: roles,
    logger,
    consumers: await checkJobsModule(config.jobsModule, roles !== "maintenance"),
    onFatal: (error) => onFatal(error),
    scheduler: await hasRecurringTasks(config),
  });
  const exitCode = new Promise<number>((resolve) => {
    // A configuration error on a child's first boot: stop the rest and exit with the error.
    onFatal = (error) => {
      fatal ??= error;
      void supervisor.stop().then(resolve);
    };
    let firstSignalAt: number | null = null;
    const graceful = (signal: NodeJS.Signals): void => {
      if (firstSignalAt === null) {
        firstSignalAt = Date.now();
        logger.info({ signal }, "stopping gracefully: in-flight jobs finish first (send it again to stop at once)");
        void supervisor.stop().then(resolve);
      } else if (Date.now() - firstSignalAt < SAME_SIGNAL_WINDOW_MS) {
        // One Ctrl-C can arrive twice: from the terminal (to the whole process group) and
        // forwarded by a parent such as npm or a script; that is not a request to hurry.
      } else {
        logger.warn({ signal }, "stopping immediately");
        void supervisor.kill().then(resolve);
      }
    };
    process.on("SIGTERM", graceful);
    process.on("SIGINT", graceful);
    process.on("SIGQUIT", () => {
      logger.warn({ signal: "SIGQUIT" }, "stopping immediately: children are killed, their jobs return after their VT");
      void supervisor.kill().then(resolve);
    });
  });
  const closeHealth = await serveHealth(config, supervisor, logger);
  try {
    await supervisor.start();
  } catch (error) {
    await supervisor.kill();
    await closeHealth?.();
    throw error;
  }
  const code = await exitCode;
  await closeHealth?.();
  if (fatal) throw fatal; // main prints it and exits 1
  return code;
}
