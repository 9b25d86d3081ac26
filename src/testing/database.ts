import { randomBytes } from "node:crypto";
import pg from "pg";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "../embedded/postgres.ts";

/**
 * A database of its own for a test file: created on the server DATABASE_URL names (the
 * statement runs on that database; the role needs CREATEDB), or, without DATABASE_URL, on
 * an embedded PostgreSQL started once per process (a scratch one, removed when the process
 * ends). drop() removes it.
 */
export interface TestDatabase {
  name: string;
  url: string;
  /** A small pool on the new database. drop() ends it. */
  pool: pg.Pool;
  drop(): Promise<void>;
}

let embedded: Promise<EmbeddedPostgres> | undefined;

async function serverUrl(env: Record<string, string | undefined>): Promise<string> {
  if (env["DATABASE_URL"]) return env["DATABASE_URL"];
  embedded ??= startEmbeddedPostgres({ ephemeral: true, log: () => {} });
  return (await embedded).url();
}

export async function createTestDatabase(
  options: { prefix?: string; env?: Record<string, string | undefined> } = {},
): Promise<TestDatabase> {
  return createDatabaseOnServer(await serverUrl(options.env ?? process.env), { prefix: options.prefix ?? "pgbus_test" });
}

/**
 * Creates a database with a unique name (`<prefix>_<random>`) on the server `adminUrl`
 * connects to, with a pool of `poolMax` connections on it. drop() ends the pool and drops
 * the database, whoever is still connected.
 */
export async function createDatabaseOnServer(adminUrl: string, options: { prefix: string; poolMax?: number }): Promise<TestDatabase> {
  const name = `${options.prefix.replace(/[^a-z0-9_]/g, "_").slice(0, 40)}_${randomBytes(4).toString("hex")}`;
  await adminQuery(adminUrl, `CREATE DATABASE "${name}"`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const pool = new pg.Pool({ connectionString: url.href, max: options.poolMax ?? 5 });
  pool.on("error", () => {});
  return {
    name,
    url: url.href,
    pool,
    async drop() {
      await pool.end();
      await adminQuery(adminUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    },
  };
}

async function adminQuery(adminUrl: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}
