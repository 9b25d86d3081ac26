/**
 * The PostgreSQL server the tests, benchmarks and chaos run use: the one `DATABASE_URL`
 * names (as documented in the README), else postgres://postgres@127.0.0.1:5432. Test
 * databases are created and dropped from its `postgres` database; `PGBUS_TEST_ADMIN_URL`
 * overrides that admin connection alone.
 */
const DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/postgres";

function serverUrl(): URL {
  return new URL(process.env["DATABASE_URL"] || DEFAULT_URL);
}

/** A connection string for `database` on the server, with the server's user and password. */
export function urlForDatabase(database: string): string {
  const url = serverUrl();
  url.pathname = `/${database}`;
  return url.href;
}

/** Where test databases are created and dropped from. */
export function adminUrl(): string {
  return process.env["PGBUS_TEST_ADMIN_URL"] || urlForDatabase("postgres");
}
