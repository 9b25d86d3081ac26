import { type Command, InvalidArgumentError } from "commander";
import { ValidationError } from "../../errors.ts";
import { type DeadLetterSelection, discardDeadLetters, listDeadLetters, retryDeadLetters } from "../../queue/admin.ts";
import { dlqName } from "../../queue/names.ts";
import { loadCliConfig, withPool } from "../context.ts";
import { formatTable, printJson, printLine } from "../output.ts";

function parseLimit(value: string): number {
  if (!/^[1-9]\d*$/.test(value)) throw new InvalidArgumentError("must be a whole number >= 1");
  return Number(value);
}

function selection(ids: string[], all: boolean | undefined): DeadLetterSelection {
  if (all && ids.length > 0) throw new ValidationError("INVALID_OPTION", "give message ids or --all, not both");
  if (all) return { all: true };
  if (ids.length === 0) throw new ValidationError("INVALID_OPTION", "give the message ids to act on, or --all");
  return { ids };
}

/**
 * Reports what was done. Ids asked for but not found are an error: when none was found it
 * is the only output (one line on stderr, non-zero exit), otherwise it follows the count.
 */
function report(done: string, requested: string[], found: string[], queue: string): void {
  const dlq = dlqName(baseName(queue));
  const missing = requested.filter((id) => !found.includes(id));
  const notFound = `no message ${missing.join(", ")} in ${dlq} (\`pgbus dlq list ${baseName(queue)}\` shows its ids)`;
  if (missing.length > 0 && found.length === 0) throw new ValidationError("INVALID_OPTION", `${notFound}; nothing done`);
  printLine(done);
  if (missing.length === 0) return;
  process.stderr.write(`pgbus: ${notFound}\n`);
  process.exitCode = 1;
}

const baseName = (queue: string): string => queue.replace(/_dlq$/, "");

export function registerDlq(program: Command): void {
  const dlq = program.command("dlq").description("inspect, retry or discard dead-lettered messages (QUEUE_dlq)");

  dlq
    .command("list")
    .description("list the dead letters of a queue, oldest first")
    .argument("<queue>", "the queue whose dead letters to list")
    .option("--limit <n>", "at most this many", parseLimit, 100)
    .option("--json", "print as JSON")
    .action(async (queue: string, options: { limit: number; json?: boolean }, command: Command) => {
      const config = await loadCliConfig(command);
      const letters = await withPool(config, (pool) => listDeadLetters(pool, queue, options.limit));
      if (options.json) return printJson(letters);
      if (letters.length === 0) return printLine(`${dlqName(baseName(queue))} is empty`);
      printLine(
        formatTable(
          ["ID", "JOB", "ATTEMPTS", "DEAD AT", "REASON", "ERROR"],
          letters.map((l) => [
            l.id,
            l.job,
            l.attempts,
            l.deadAt,
            l.reason,
            l.error ? `${l.error.name}: ${l.error.message}`.slice(0, 120) : null,
          ]),
        ),
      );
    });

  dlq
    .command("retry")
    .description("move dead letters back to their queue as new messages")
    .argument("<queue>", "the queue to move them back to")
    .argument("[ids...]", "dead-letter message ids")
    .option("--all", "every dead letter of the queue")
    .action(async (queue: string, ids: string[], options: { all?: boolean }, command: Command) => {
      const which = selection(ids, options.all);
      const config = await loadCliConfig(command);
      const { moved } = await withPool(config, (pool) => retryDeadLetters(pool, queue, which));
      report(`moved ${moved.length} message(s) from ${dlqName(baseName(queue))} back to ${baseName(queue)}`, ids, moved, queue);
    });

  dlq
    .command("discard")
    .description("delete dead letters for good")
    .argument("<queue>", "the queue whose dead letters to delete")
    .argument("[ids...]", "dead-letter message ids")
    .option("--all", "every dead letter of the queue")
    .action(async (queue: string, ids: string[], options: { all?: boolean }, command: Command) => {
      const which = selection(ids, options.all);
      const config = await loadCliConfig(command);
      const deleted = await withPool(config, (pool) => discardDeadLetters(pool, queue, which));
      report(`deleted ${deleted.length} message(s) from ${dlqName(baseName(queue))}`, ids, deleted, queue);
    });
}
