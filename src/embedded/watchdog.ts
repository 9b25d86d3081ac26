/**
 * The process between an application and its embedded PostgreSQL: it starts `postgres`,
 * and stops it (fast shutdown: clients are disconnected, a checkpoint is written, nothing
 * is left to recover) as soon as its stdin closes. Its stdin is a pipe from the process
 * that asked for the server, and the kernel closes that pipe however that process ends:
 * a normal exit, an uncaught error, Ctrl-C, or `kill -9`. So the server never outlives
 * its owner. It runs in its own process group, so a Ctrl-C meant for the application does
 * not stop the database under the application's own graceful shutdown.
 *
 * argv[2] is JSON: { postgres, args, uid?, gid?, logFile, removeDir? }; removeDir (a scratch
 * server's directory) is deleted once the server has exited.
 */
import { spawn } from "node:child_process";
import { openSync, rmSync } from "node:fs";

interface WatchdogArgs {
  postgres: string;
  args: string[];
  uid?: number;
  gid?: number;
  logFile: string;
  removeDir?: string;
}

/** After a fast shutdown request, how long before an immediate one, then SIGKILL. */
const FAST_SHUTDOWN_MS = 15_000;
const IMMEDIATE_SHUTDOWN_MS = 5_000;

const options = JSON.parse(process.argv[2] ?? "{}") as WatchdogArgs;
const log = openSync(options.logFile, "a");
const server = spawn(options.postgres, options.args, {
  stdio: ["ignore", log, log],
  ...(options.uid !== undefined ? { uid: options.uid } : {}),
  ...(options.gid !== undefined ? { gid: options.gid } : {}),
  env: { ...process.env, LC_ALL: "C", LC_MESSAGES: "C" },
});

let stopping = false;
function stopServer(): void {
  if (stopping) return;
  stopping = true;
  server.kill("SIGINT");
  setTimeout(() => server.kill("SIGQUIT"), FAST_SHUTDOWN_MS).unref();
  setTimeout(() => server.kill("SIGKILL"), FAST_SHUTDOWN_MS + IMMEDIATE_SHUTDOWN_MS).unref();
}

server.on("error", (error) => {
  process.stderr.write(`pgbus embedded watchdog: cannot start postgres: ${error.message}\n`);
  process.exit(2);
});
server.on("exit", (code, signal) => {
  if (options.removeDir) rmSync(options.removeDir, { recursive: true, force: true });
  process.exit(stopping ? 0 : signal ? 3 : (code ?? 3));
});

// The owner closes stdin to ask for a stop, or dies and the kernel closes it.
process.stdin.on("end", stopServer);
process.stdin.on("close", stopServer);
process.stdin.on("error", stopServer);
process.stdin.resume();
process.on("SIGTERM", stopServer);
process.on("SIGINT", stopServer);
process.on("SIGHUP", stopServer);
