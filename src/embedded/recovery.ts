import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { EmbeddedPostgresError } from "./errors.ts";
import { SERVER_USER } from "./server-user.ts";

/** What we write beside the data directory while a server runs, so a later start can tell an orphan from a live owner. */
export interface OwnerRecord {
  ownerPid: number;
  watchdogPid: number;
  port: number;
}

/** Whether `pid` runs (a zombie, dead but not yet reaped by its new parent, does not). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ...", S being the state.
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return true; // no /proc (macOS)
  }
}

/** Whether `pid` is a postgres server (guards against a recycled pid in a stale lock file). */
async function isPostgresProcess(pid: number): Promise<boolean> {
  if (!isAlive(pid)) return false;
  try {
    return (await readFile(`/proc/${pid}/comm`, "utf8")).trim().startsWith("postgres");
  } catch {
    // No /proc (macOS): ask ps.
    return new Promise((resolvePromise) =>
      execFile("ps", ["-p", String(pid), "-o", "comm="], (error, stdout) => resolvePromise(!error && /postgres/.test(stdout))),
    );
  }
}

async function waitForExit(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await sleep(50);
  }
  return !isAlive(pid);
}

async function readOwner(file: string): Promise<OwnerRecord | undefined> {
  try {
    return JSON.parse(await readFile(file, "utf8")) as OwnerRecord;
  } catch {
    return undefined;
  }
}

async function postmasterPid(dataDir: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(join(dataDir, "postmaster.pid"), "utf8")).split("\n")[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Makes the data directory startable after whatever happened to the last owner: a server
 * whose owner is alive is a conflict (reported); one whose owner died (the watchdog was
 * killed too) is stopped; a lock file whose process is gone is removed.
 */
export async function recover(dataDir: string, ownerFile: string, log: (line: string) => void): Promise<void> {
  const pid = await postmasterPid(dataDir);
  const owner = await readOwner(ownerFile);
  if (pid !== undefined && (await isPostgresProcess(pid))) {
    if (owner && isAlive(owner.ownerPid)) {
      throw new EmbeddedPostgresError(
        `the embedded PostgreSQL in ${dataDir} is already running for process ${owner.ownerPid} ` +
          `(postgres://${SERVER_USER}@127.0.0.1:${owner.port}/postgres): stop that process, or set DATABASE_URL to that URL to share it`,
      );
    }
    log(`pgbus: stopping an embedded PostgreSQL (pid ${pid}) left running by a process that is gone`);
    process.kill(pid, "SIGINT");
    if (!(await waitForExit(pid, 20_000))) {
      process.kill(pid, "SIGKILL");
      await waitForExit(pid, 5_000);
    }
  }
  // A lock file whose server is gone (its owner was SIGKILLed with its whole process
  // group): PostgreSQL removes it itself unless the pid was reused; remove it either way.
  if (existsSync(join(dataDir, "postmaster.pid")) && !(pid !== undefined && (await isPostgresProcess(pid)))) {
    await unlink(join(dataDir, "postmaster.pid")).catch(() => {});
  }
  await unlink(ownerFile).catch(() => {});
}
