import pg from "pg";

/**
 * The one thing pgbus needs from a database handle: run a statement with parameters.
 * pg's Pool, Client and PoolClient fit as they are, and so does a two-line adapter over
 * Kysely, Drizzle or Knex, so work can join the caller's transaction.
 */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[]; rowCount?: number | null }>;
}

/** A statement that pg may prepare once per connection under `name`. */
export interface NamedStatement {
  name: string;
  text: string;
}

/** Where pgbus gets its connections: a URL, or the application's own pg.Pool. */
export type DatabaseOption = string | pg.Pool;

export function isPgPool(value: unknown): value is pg.Pool {
  return value instanceof pg.Pool;
}

export interface PoolOptions {
  max: number;
  applicationName: string;
}

export function createPool(connectionString: string, options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max: options.max,
    application_name: options.applicationName,
    // Idle connections are closed so a quiet worker gives its connections back.
    idleTimeoutMillis: 30_000,
  });
  // An idle client losing its connection (database restart) must not crash the process;
  // the next query gets a fresh connection.
  pool.on("error", () => {});
  return pool;
}

/** Runs `fn` inside BEGIN/COMMIT on one connection of `pool`, rolling back on any error. */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const result = await fn(client);
    await client.query("COMMIT");
    return result;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
