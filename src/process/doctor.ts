import type { Queryable } from "../db/queryable.ts";
import { isUndefinedTable } from "../db/pg-errors.ts";
import { isDlqName } from "../queue/names.ts";
import { loadMigrations } from "../schema/migrator.ts";
import * as sql from "./doctor-sql.ts";

/**
 * `pgbus doctor`: looks at the database the way an operator would before an incident and
 * says what to fix. Each check is one function returning one verdict; none changes anything.
 */

export type DoctorStatus = "ok" | "fail";

export interface DoctorCheck {
  name: string;
  status: DoctorStatus;
  detail: string;
  /** What to do about it, when it is not ok. */
  fix?: string;
}

export interface DoctorOptions {
  /** A process without a heartbeat for this long is stale. Default 30000 (the config's staleProcessAfterMs). */
  staleProcessAfterMs?: number;
  /** Dead letters that arrived within this many hours count as growth. Default 1. */
  deadLetterWindowHours?: number;
  /** Fail when pgbus's connections plus the others leave less than this share of max_connections free. Default 0.2. */
  minConnectionHeadroom?: number;
}

/** The oldest PostgreSQL pgbus supports (the oldest major version still maintained upstream when this was written). */
export const MIN_SERVER_VERSION = 140_000;

/** Storage options tune_queue_table sets on a queue table that matter most: vacuum early, whatever the table size. */
const TUNED = { autovacuum_vacuum_scale_factor: 0.05 } as const;

interface ServerRow {
  version_num: number;
  version: string;
  max_connections: number;
  reserved_connections: number;
  connections: number;
  pgbus_connections: number;
  autovacuum: boolean;
  in_recovery: boolean;
}

interface QueueTableRow {
  queue_name: string;
  is_partitioned: boolean;
  has_queue_table: boolean;
  has_archive_table: boolean;
  reloptions: string[];
  has_primary_key: boolean;
  has_archive_index: boolean;
  has_vt_index: boolean;
  has_invalid_index: boolean;
}

const ok = (name: string, detail: string): DoctorCheck => ({ name, status: "ok", detail });
const fail = (name: string, detail: string, fix: string): DoctorCheck => ({ name, status: "fail", detail, fix });

/** The server's verdict from its settings row; exported for its unit test (old versions cannot be run here). */
export function serverCheck(server: Pick<ServerRow, "version_num" | "version" | "in_recovery">): DoctorCheck {
  if (server.version_num < MIN_SERVER_VERSION) {
    return fail("server", `PostgreSQL ${server.version} is older than pgbus supports (14)`, "upgrade PostgreSQL to 14 or later");
  }
  if (server.in_recovery) {
    return fail("server", `PostgreSQL ${server.version} is a read-only standby`, "point DATABASE_URL at the primary");
  }
  return ok("server", `PostgreSQL ${server.version}, a primary`);
}

function autovacuumCheck(server: ServerRow): DoctorCheck {
  if (!server.autovacuum) {
    return fail(
      "autovacuum",
      "off for the whole server: dead rows of the queue tables pile up, and every claim scans them",
      "set autovacuum = on in postgresql.conf and reload",
    );
  }
  return ok("autovacuum", "on");
}

function connectionsCheck(server: ServerRow, minHeadroom: number): DoctorCheck {
  const usable = server.max_connections - server.reserved_connections;
  const free = usable - server.connections;
  const detail = `${server.connections} of ${usable} usable connections in use (${server.pgbus_connections} by pgbus), ${free} free`;
  if (free < usable * minHeadroom) {
    return fail(
      "connections",
      `${detail}: less than ${Math.round(minHeadroom * 100)}% headroom`,
      "raise max_connections, put PgBouncer (session mode) in front of the applications, or run fewer worker processes (each holds 2 connections, whatever its capacity)",
    );
  }
  return ok("connections", detail);
}

async function extensionsCheck(db: Queryable, pgmqSchema: boolean): Promise<DoctorCheck> {
  const extensions = (await db.query(sql.EXTENSIONS)).rows as Array<{ name: string; version: string }>;
  const pgmq = extensions.find((extension) => extension.name === "pgmq");
  const listed = extensions.map((extension) => `${extension.name} ${extension.version}`).join(", ");
  if (!pgmqSchema)
    return fail(
      "extensions",
      `no pgmq schema (extensions: ${listed})`,
      "run `pgbus migrate`: it installs pgbus's own pgmq when the extension is not there",
    );
  return ok("extensions", pgmq ? `pgmq extension ${pgmq.version}; ${listed}` : `pgbus's own pgmq (no pgmq extension); ${listed}`);
}

async function migrationsCheck(db: Queryable, pgmqExtension: boolean): Promise<DoctorCheck> {
  const applied = new Set(
    ((await db.query(sql.APPLIED_MIGRATIONS)).rows as Array<{ set_name: string; version: number }>).map(
      (row) => `${row.set_name}/${row.version}`,
    ),
  );
  const all = (await loadMigrations()).filter((migration) => !(migration.set === "pgmq" && pgmqExtension));
  const pending = all.filter((migration) => !applied.has(`${migration.set}/${migration.version}`));
  if (pending.length > 0) {
    return fail(
      "migrations",
      `${pending.length} pending: ${pending.map((m) => `${m.set}/${m.name}`).join(", ")}`,
      "run `pgbus migrate` (safe while workers run)",
    );
  }
  return ok("migrations", `all ${all.length} applied`);
}

function reloptionsOf(row: QueueTableRow): Map<string, string> {
  return new Map(row.reloptions.map((option) => option.split("=", 2) as [string, string]));
}

interface QueueProblem {
  problem: string;
  fix: string;
}

/** What is wrong with one queue's tables, each with its fix; empty when nothing. */
function queueTableProblems(row: QueueTableRow): QueueProblem[] {
  const q = `pgmq.q_${row.queue_name}`;
  const a = `pgmq.a_${row.queue_name}`;
  if (!row.has_queue_table || !row.has_archive_table) {
    const missing = row.has_queue_table ? a : q;
    return [
      {
        problem: `table ${missing} missing`,
        fix: `move its messages elsewhere, then SELECT pgmq.drop_queue('${row.queue_name}'); SELECT pgmq.create('${row.queue_name}');`,
      },
    ];
  }
  const problems: QueueProblem[] = [];
  const tune = `SELECT pgbus.tune_queue_table('${row.queue_name}');`;
  if (!row.has_primary_key) problems.push({ problem: "no primary key on msg_id", fix: `ALTER TABLE ${q} ADD PRIMARY KEY (msg_id);` });
  if (!row.has_archive_index)
    problems.push({ problem: "no archived_at index on its archive", fix: `CREATE INDEX CONCURRENTLY ON ${a} (archived_at);` });
  if (row.has_invalid_index) {
    problems.push({
      problem: "an invalid index (a failed concurrent build)",
      fix: `REINDEX TABLE CONCURRENTLY ${q}; REINDEX TABLE CONCURRENTLY ${a};`,
    });
  }
  if (row.is_partitioned) return problems; // pg_partman owns partitioned tables' storage
  if (row.has_vt_index) problems.push({ problem: "a vt index (every claim then writes it)", fix: tune });
  const options = reloptionsOf(row);
  if (options.get("autovacuum_enabled") === "false") {
    problems.push({ problem: "autovacuum disabled on the table", fix: `ALTER TABLE ${q} RESET (autovacuum_enabled);` });
  }
  const scale = Number(options.get("autovacuum_vacuum_scale_factor") ?? "0.2");
  if (scale > TUNED.autovacuum_vacuum_scale_factor) {
    problems.push({ problem: `autovacuum_vacuum_scale_factor ${scale} (vacuums only once that share of the table is dead)`, fix: tune });
  }
  return problems;
}

async function queueTablesChecks(db: Queryable): Promise<DoctorCheck[]> {
  const rows = (await db.query(sql.QUEUE_TABLES)).rows as QueueTableRow[];
  const broken = rows.map((row) => ({ queue: row.queue_name, problems: queueTableProblems(row) })).filter((q) => q.problems.length > 0);
  if (broken.length === 0) return [ok("queue tables", `${rows.length} queue(s): indexes and autovacuum settings as pgbus sets them`)];
  return broken.map(({ queue, problems }) =>
    fail(`queue ${queue}`, problems.map((p) => p.problem).join("; "), [...new Set(problems.map((p) => p.fix))].join("  ")),
  );
}

async function staleProcessesCheck(db: Queryable, staleAfterMs: number): Promise<DoctorCheck> {
  const stale = (await db.query(sql.STALE_PROCESSES, [staleAfterMs])).rows as Array<{
    role: string;
    host: string;
    pid: number;
    beat_age_sec: number;
  }>;
  if (stale.length === 0) return ok("processes", `no heartbeat older than ${staleAfterMs / 1000} s`);
  const names = stale.map((p) => `${p.role} pid ${p.pid} on ${p.host} (${Math.round(p.beat_age_sec)} s)`).join(", ");
  return fail(
    "processes",
    `${stale.length} stale: ${names}`,
    "a stale row means its process hung or died without cleaning up, and no maintenance process reaped it: check those hosts, and that `pgbus start` runs a maintenance process",
  );
}

async function deadLetterCheck(db: Queryable, windowHours: number): Promise<DoctorCheck> {
  const dlqs = ((await db.query(sql.QUEUE_NAMES)).rows as Array<{ name: string }>).map((row) => row.name).filter(isDlqName);
  const growth: string[] = [];
  for (const dlq of dlqs) {
    try {
      const count = ((await db.query(sql.deadLettersSince(dlq), [windowHours])).rows[0] as { count: number }).count;
      if (count > 0) growth.push(`${dlq} +${count}`);
    } catch (error) {
      if (!isUndefinedTable(error)) throw error; // dropped meanwhile
    }
  }
  if (growth.length === 0) return ok("dead letters", `no new dead letters in the last ${windowHours} h`);
  return fail(
    "dead letters",
    `new in the last ${windowHours} h: ${growth.join(", ")}`,
    "see why with `pgbus dlq list <queue>` (each has its error), fix the cause, then `pgbus dlq retry` or `pgbus dlq discard`",
  );
}

/** Runs every check; a check that cannot run (e.g. no pgbus schema yet) is a failure with the reason. */
export async function runDoctor(db: Queryable, options: DoctorOptions = {}): Promise<DoctorCheck[]> {
  const server = (await db.query(sql.SERVER)).rows[0] as ServerRow;
  const schemas = (await db.query(sql.SCHEMAS)).rows[0] as { pgmq: boolean; migrations: boolean };
  const pgmqExtension = ((await db.query(sql.EXTENSIONS)).rows as Array<{ name: string }>).some((e) => e.name === "pgmq");
  const checks: DoctorCheck[] = [
    serverCheck(server),
    autovacuumCheck(server),
    connectionsCheck(server, options.minConnectionHeadroom ?? 0.2),
    await extensionsCheck(db, schemas.pgmq),
  ];
  if (!schemas.migrations || !schemas.pgmq) {
    checks.push(fail("migrations", "pgbus's schema is not there", "run `pgbus migrate`"));
    return checks;
  }
  checks.push(await migrationsCheck(db, pgmqExtension));
  checks.push(...(await queueTablesChecks(db)));
  checks.push(await staleProcessesCheck(db, options.staleProcessAfterMs ?? 30_000));
  checks.push(await deadLetterCheck(db, options.deadLetterWindowHours ?? 1));
  return checks;
}
