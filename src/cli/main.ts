#!/usr/bin/env node
/**
 * The `pgbus` command. program.ts wires up the commands (one file each in ./commands);
 * this file runs them and turns any failure into a non-zero exit and one clear line on stderr (the stack only with
 * PGBUS_DEBUG=1), since a stack trace buries the one sentence the user needs.
 */
import { CommanderError } from "commander";
import { buildProgram, describeError } from "./program.ts";

async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (error) {
    // Commander has already printed its own message (or the help / version).
    if (error instanceof CommanderError) {
      process.exitCode = error.exitCode;
      return;
    }
    process.stderr.write(`pgbus: ${describeError(error).replace(/\n/g, "\n  ")}\n`);
    if (process.env["PGBUS_DEBUG"] === "1" && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    // Exit now rather than when the event loop empties: a jobs module the command loaded may
    // hold handles open (a pool created at import) and would keep a failed command alive.
    process.exit(1);
  }
}

await main(process.argv);
