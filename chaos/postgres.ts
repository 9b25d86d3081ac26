import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import type pg from "pg";

const run = promisify(execFile);

/** The newest cluster version under /etc/postgresql (what .ci/run starts). */
export function clusterVersion(): string {
  const versions = readdirSync("/etc/postgresql").sort((a, b) => Number.parseFloat(a) - Number.parseFloat(b));
  const newest = versions.at(-1);
  if (!newest) throw new Error("no PostgreSQL cluster under /etc/postgresql");
  return newest;
}

export async function isReady(): Promise<boolean> {
  try {
    await run("pg_isready", ["-h", "127.0.0.1", "-p", "5432", "-q"]);
    return true;
  } catch {
    return false;
  }
}

export interface PostgresRestart {
  /** When the restart was issued (the server goes down right after). */
  issuedAt: number;
  /** When pg_isready first answered again. */
  upAt: number;
}

/** Restarts the whole cluster (fast shutdown: sessions are terminated) and waits until it accepts connections. */
export async function restartPostgres(version = clusterVersion()): Promise<PostgresRestart> {
  const issuedAt = Date.now();
  await run("pg_ctlcluster", ["--skip-systemctl-redirect", version, "main", "restart"], { timeout: 60_000 });
  const deadline = Date.now() + 60_000;
  while (!(await isReady())) {
    if (Date.now() > deadline) throw new Error("PostgreSQL did not come back within 60 s of the restart");
    await sleep(50);
  }
  return { issuedAt, upAt: Date.now() };
}

/**
 * Client sessions on the server other than this run's: a restart would break them (the
 * test suite, another engineer's work). Waits up to `waitMs` for them to go.
 */
export async function otherSessions(pool: pg.Pool, ownDatabase: string, waitMs: number): Promise<string[]> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const result = await pool.query<{ datname: string; n: number }>(
      `SELECT coalesce(datname, '(none)') AS datname, count(*)::int AS n FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND coalesce(datname, '') <> $1
        GROUP BY 1 ORDER BY 1`,
      [ownDatabase],
    );
    const others = result.rows.map((row) => `${row.datname} (${row.n})`);
    if (others.length === 0 || Date.now() > deadline) return others;
    await sleep(500);
  }
}
