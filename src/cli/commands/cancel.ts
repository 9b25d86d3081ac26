import type { Command } from "commander";
import { hostname, userInfo } from "node:os";
import { type CancelStatus, cancelJob } from "../../queue/cancel.ts";
import { loadCliConfig, withPool } from "../context.ts";
import { printJson, printLine } from "../output.ts";

const SAID: Record<CancelStatus, string> = {
  cancelled: "cancelled: archived as cancelled; it will not run",
  cancelling: "cancelling: it is running (or waiting for a retry); its run is aborted and it will be archived as cancelled",
  already_finished: "already finished: it is no longer in the queue (done, dead-lettered or deleted)",
  not_found: "not found: the queue never had a message with that id",
};

/** Who cancels, as recorded on the archived message: user@host of whoever runs the command. */
function whoAmI(): string {
  let user = process.env["USER"] ?? "unknown";
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry (some containers): the environment's USER
  }
  return `${user}@${hostname()}`;
}

export function registerCancel(program: Command): void {
  program
    .command("cancel")
    .description("cancel a job by its message id: a waiting or delayed job is archived as cancelled, a running one is aborted")
    .argument("<queue>", "the job's queue")
    .argument("<id>", "its message id (as enqueue printed it)")
    .option("--by <name>", "who cancels, recorded on the archived message (default: user@host)")
    .option("--json", "print the result as JSON")
    .action(async (queue: string, id: string, options: { by?: string; json?: boolean }, command: Command) => {
      const config = await loadCliConfig(command);
      const result = await withPool(config, (pool) => cancelJob(pool, queue, id, { by: options.by ?? whoAmI() }));
      if (options.json) printJson(result);
      else printLine(`job ${id} of ${queue}: ${SAID[result.status]}`);
      // A script cancelling a wrong id learns it from the exit code.
      if (result.status === "not_found") process.exitCode = 1;
    });
}
