import { readdir, readFile } from "node:fs/promises";
import type pg from "pg";
import { PgbusError } from "../errors.ts";
import { ADVISORY_LOCK } from "../db/advisory-locks.ts";
import { withTransaction } from "../db/queryable.ts";

/**
 * Numbered SQL files, applied in order in one transaction under an advisory lock and
 * recorded in pgbus.schema_migrations, so twenty processes migrating at once end with one
 * correct schema: the first applies, the others wait on the lock and find nothing to do.
 *
 * Two sets: `pgmq` (the plain-SQL PGMQ API, skipped when the pgmq extension is installed)
 * and `pgbus` (the project's own tables).
 */
const MIGRATION_SETS = ["pgmq", "pgbus"] as const;
type MigrationSet = (typeof MIGRATION_SETS)[number];

export interface Migration {
  set: MigrationSet;
  version: number;
  name: string;
  sql: string;
}

export interface MigrationResult {
  /** `<set>/<file>` of each migration this call applied; empty when the schema was current. */
  applied: string[];
  /** True when the pgmq extension is installed and used instead of pgbus's plain SQL. */
  pgmqExtension: boolean;
}

const FILE_NAME = /^(\d{4})_[a-z0-9_]+\.sql$/;

export async function loadMigrations(): Promise<Migration[]> {
  const migrations: Migration[] = [];
  for (const set of MIGRATION_SETS) {
    const dir = new URL(`./migrations/${set}/`, import.meta.url);
    for (const file of (await readdir(dir)).sort()) {
      const match = FILE_NAME.exec(file);
      if (!match) continue;
      migrations.push({ set, version: Number(match[1]), name: file, sql: await readFile(new URL(file, dir), "utf8") });
    }
  }
  return migrations;
}

export async function migrate(pool: pg.Pool): Promise<MigrationResult> {
  const migrations = await loadMigrations();
  return withTransaction(pool, async (client) => {
    await client.query("SELECT pg_advisory_xact_lock($1)", [ADVISORY_LOCK.migrations]);
    await client.query("CREATE SCHEMA IF NOT EXISTS pgbus");
    await client.query(`CREATE TABLE IF NOT EXISTS pgbus.schema_migrations (
      set_name text NOT NULL, version integer NOT NULL, name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (set_name, version))`);
    const extension = await client.query("SELECT 1 FROM pg_extension WHERE extname = 'pgmq'");
    const pgmqExtension = (extension.rowCount ?? 0) > 0;
    const done = await client.query<{ set_name: string; version: number }>("SELECT set_name, version FROM pgbus.schema_migrations");
    const appliedKeys = new Set(done.rows.map((row) => `${row.set_name}/${row.version}`));
    const applied: string[] = [];
    for (const migration of migrations) {
      if (migration.set === "pgmq" && pgmqExtension) continue;
      if (appliedKeys.has(`${migration.set}/${migration.version}`)) continue;
      try {
        await client.query(migration.sql);
      } catch (cause) {
        const reason = cause instanceof Error ? cause.message : String(cause);
        throw new PgbusError("MIGRATION_FAILED", `migration ${migration.set}/${migration.name} failed: ${reason}`, { cause });
      }
      await client.query("INSERT INTO pgbus.schema_migrations (set_name, version, name) VALUES ($1, $2, $3)", [
        migration.set,
        migration.version,
        migration.name,
      ]);
      applied.push(`${migration.set}/${migration.name}`);
    }
    return { applied, pgmqExtension };
  });
}
