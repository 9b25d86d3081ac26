/**
 * Entry point of every child the supervisor forks. Owns the process: the IPC protocol,
 * signals, the watch on the supervisor and the exit code; child.ts builds the role.
 *
 * Exit codes: 0 after a clean stop, RECYCLE_EXIT_CODE after recycling itself,
 * BOOT_FAILURE_EXIT_CODE when the role could not start for a configuration error (a
 * PgbusError: bad jobs module, invalid option), 1 on a crash or any other boot failure.
 */
import { PgbusError, toErrorRecord } from "../errors.ts";
import { type Logger, createConsoleLogger } from "../logger.ts";
import { type InitMessage, type RunningChild, startChild } from "./child.ts";
import { BOOT_FAILURE_EXIT_CODE, type ChildMessage, RECYCLE_EXIT_CODE, isParentMessage, roleName } from "./messages.ts";

/** How often the child checks that its supervisor still exists (see watchParent). */
const PARENT_CHECK_MS = 1_000;

if (!process.send) {
  process.stderr.write("pgbus: child-main is forked by `pgbus start`; it cannot run on its own\n");
  process.exit(2);
}

let logger: Logger = createConsoleLogger("info", { pid: process.pid });
let booting: Promise<RunningChild | null> | null = null;
let stopping = false;

function send(message: ChildMessage): void {
  // The supervisor may be gone; a lost stats message must not crash the child.
  if (!process.connected) return;
  try {
    process.send?.(message, undefined, undefined, () => {});
  } catch {
    // channel closed between the check and the send
  }
}

async function boot(init: InitMessage): Promise<RunningChild | null> {
  logger = createConsoleLogger(init.config.logLevel, { role: roleName(init.role), pid: process.pid });
  try {
    const running = await startChild(init, logger, { send, recycle });
    if (!stopping) {
      logger.info(
        { executionMode: running.ready.executionMode, capacity: running.ready.capacity, queues: running.ready.queues },
        "child started",
      );
      send(running.ready);
    }
    return running;
  } catch (error) {
    const record = toErrorRecord(error);
    logger.error({ err: record.message, ...(process.env["PGBUS_DEBUG"] === "1" ? { stack: record.stack } : {}) }, "child could not start");
    if (!(error instanceof PgbusError)) process.exit(1); // not the configuration: a crash, re-forked with backoff
    // The supervisor reports the error and stops (on first boot): make sure it has it before the exit.
    const exit = (): never => process.exit(BOOT_FAILURE_EXIT_CODE);
    setTimeout(exit, 1_000);
    if (!process.connected) exit();
    try {
      process.send?.({ type: "boot-failed", error: record.message } satisfies ChildMessage, undefined, undefined, exit);
    } catch {
      exit();
    }
    return null;
  }
}

/** Stops gracefully (waiting for a boot in progress) and exits with `code`. Only the first call counts. */
function shutdown(code: number, reason: string): void {
  if (stopping) return;
  stopping = true;
  clearInterval(parentWatch);
  logger.info({ reason }, "child stopping");
  void (async () => {
    try {
      const running = booting ? await booting : null;
      await running?.stop();
    } catch (error) {
      logger.error({ err: toErrorRecord(error).message }, "child stop failed");
      code = code === 0 ? 1 : code;
    }
    process.exit(code);
  })();
}

function recycle(reason: string): void {
  if (stopping) return;
  logger.info({ reason }, "child recycling");
  send({ type: "recycle", reason });
  shutdown(RECYCLE_EXIT_CODE, `recycling: ${reason}`);
}

process.on("message", (message: unknown) => {
  if (!isParentMessage(message)) return;
  if (message.type === "init") booting ??= boot(message);
  else if (message.type === "stop") shutdown(0, "asked by the supervisor");
  // "notify" and "listening" are for the role's wake-ups (ipc-notifications.ts).
});

// The children must not outlive the supervisor. Its death closes the IPC channel
// ('disconnect'), even under SIGKILL; checking the parent pid as well covers any way the
// channel could stay open while the parent is gone.
//
// A supervisor can die while its new child is still loading (SIGKILLed right after a
// re-fork): the channel may close before this listener exists, and process.ppid is then
// already init's. So the supervisor passes its pid as the first argument, and a channel
// already closed counts as gone. (Without this, such a child lived on forever, found by
// the chaos run.)
process.on("disconnect", () => shutdown(0, "supervisor gone (IPC channel closed)"));
const parentPid = Number(process.argv[2]) || process.ppid;
const parentWatch = setInterval(() => {
  if (process.ppid !== parentPid) shutdown(0, "supervisor gone (parent changed)");
}, PARENT_CHECK_MS);
if (!process.connected || process.ppid !== parentPid) shutdown(0, "supervisor gone before this child started");

// Ctrl-C reaches the whole process group; the supervisor, which got it too, sends "stop",
// so the children leave the orchestration to it instead of racing it.
process.on("SIGINT", () => {});
process.on("SIGTERM", () => shutdown(0, "SIGTERM"));

process.on("uncaughtException", (error) => {
  logger.error({ err: toErrorRecord(error).message, stack: toErrorRecord(error).stack }, "child crashed");
  process.exit(1);
});
process.on("unhandledRejection", (reason) => {
  logger.error({ err: toErrorRecord(reason).message, stack: toErrorRecord(reason).stack }, "child crashed on an unhandled rejection");
  process.exit(1);
});
