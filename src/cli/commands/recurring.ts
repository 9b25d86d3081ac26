import type { Command } from "commander";
import { ValidationError } from "../../errors.ts";
import { listTasks, setTaskEnabled } from "../../process/recurring-store.ts";
import { loadCliConfig, withPool } from "../context.ts";
import { formatTable, printJson, printLine } from "../output.ts";

function iso(date: Date | null): string | null {
  return date === null ? null : date.toISOString();
}

export function registerRecurring(program: Command): void {
  const recurring = program
    .command("recurring")
    .description("list recurring tasks with their next and last run; disable or enable one without a deploy")
    .option("--json", "print as JSON")
    .action(async (options: { json?: boolean }, command: Command) => {
      const config = await loadCliConfig(command);
      const tasks = await withPool(config, (pool) => listTasks(pool));
      if (options.json)
        return printJson(
          tasks.map((task) => ({
            key: task.key,
            cron: task.cron,
            timezone: task.timezone,
            job: task.job,
            enabled: task.enabled,
            nextRunAt: task.enabled ? iso(task.nextRunAt) : null,
            lastRunAt: iso(task.lastRunAt),
          })),
        );
      if (tasks.length === 0) return printLine("no recurring tasks (a scheduler writes them when `pgbus start` runs)");
      printLine(
        formatTable(
          ["KEY", "CRON", "TIMEZONE", "JOB", "ENABLED", "NEXT RUN", "LAST RUN"],
          tasks.map((task) => [
            task.key,
            task.cron,
            task.timezone,
            task.job,
            task.enabled ? "yes" : "no",
            task.enabled ? (iso(task.nextRunAt) ?? "-") : "disabled",
            iso(task.lastRunAt) ?? "never",
          ]),
        ),
      );
    });
  for (const [name, enabled] of [
    ["disable", false],
    ["enable", true],
  ] as const) {
    recurring
      .command(`${name} <key>`)
      .description(
        enabled
          ? "enable a recurring task again (ticks that passed while it was disabled are not caught up)"
          : "stop enqueueing a recurring task's ticks until it is enabled again",
      )
      .action(async (key: string, _options: unknown, command: Command) => {
        const config = await loadCliConfig(command);
        const found = await withPool(config, async (pool) => {
          if (await setTaskEnabled(pool, key, enabled)) return true;
          const known = (await listTasks(pool)).map((task) => task.key);
          throw new ValidationError(
            "INVALID_OPTION",
            `no recurring task ${JSON.stringify(key)}; valid: ${known.length > 0 ? known.join(", ") : "(none yet: a scheduler writes them when `pgbus start` runs)"}`,
          );
        });
        if (found) printLine(`${key}: ${enabled ? "enabled" : "disabled"}`);
      });
  }
}
