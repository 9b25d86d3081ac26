import type { Command } from "commander";
import { ValidationError } from "../../errors.ts";
import { runDoctor } from "../../process/doctor.ts";
import { loadCliConfig, withPool } from "../context.ts";
import { printJson, printLine } from "../output.ts";

export function registerDoctor(program: Command): void {
  program
    .command("doctor")
    .description(
      "check the database: version, extensions, migrations, queue tables and their indexes, autovacuum settings, stale processes, dead-letter growth, connection headroom; exits 1 when something needs fixing",
    )
    .option("--json", "print as JSON")
    .option("--dead-letter-window-hours <hours>", "dead letters newer than this count as growth", "1")
    .action(async (options: { json?: boolean; deadLetterWindowHours: string }, command: Command) => {
      const config = await loadCliConfig(command);
      const hours = Number(options.deadLetterWindowHours);
      if (!Number.isFinite(hours) || hours <= 0) {
        throw new ValidationError(
          "INVALID_OPTION",
          `--dead-letter-window-hours must be a positive number of hours, got ${JSON.stringify(options.deadLetterWindowHours)}`,
        );
      }
      const checks = await withPool(config, (pool) =>
        runDoctor(pool, { staleProcessAfterMs: config.staleProcessAfterMs, deadLetterWindowHours: hours }),
      );
      const failed = checks.filter((check) => check.status === "fail");
      if (options.json) printJson({ ok: failed.length === 0, checks });
      else {
        const width = Math.max(...checks.map((check) => check.name.length));
        for (const check of checks) {
          printLine(`${check.status === "ok" ? "ok  " : "FAIL"}  ${check.name.padEnd(width)}  ${check.detail}`);
          if (check.fix) printLine(`${" ".repeat(width + 8)}fix: ${check.fix}`);
        }
        printLine(failed.length === 0 ? "\nall checks passed" : `\n${failed.length} check(s) failed`);
      }
      if (failed.length > 0) process.exitCode = 1;
    });
}
