import pg from "pg";
import { trackClients } from "./close.ts";

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

/**
 * Runs a statement, by name when `prepared` (pg then parses and plans it once per
 * connection: a measurable win on the claim/ack hot path). A bare query adapter over
 * another library cannot prepare, so user-supplied handles run the text.
 */
export async function runStatement<R>(db: Queryable, prepared: boolean, statement: NamedStatement, values: unknown[]): Promise<R[]> {
  if (prepared) {
    // pg's Pool and Client accept a config object; the Queryable seam types only text.
    const pgLike = db as unknown as { query(config: { name: string; text: string; values: unknown[] }): Promise<{ rows: R[] }> };
    return (await pgLike.query({ name: statement.name, text: statement.text, values })).rows;
  }
  return (await db.query(statement.text, values)).rows as R[];
}

/** How to open more connections like the ones of a URL or of the application's pg.Pool. */
export function clientConfigOf(database: string | pg.Pool): pg.ClientConfig {
  if (typeof database === "string") return { connectionString: database };
  const { max: _max, idleTimeoutMillis: _idle, ...config } = database.options;
  return config;
}

export interface PoolOptions {
  max: number;
  applicationName: string;
  /**
   * Client-side bound on each statement, so a connection that went silent (no reset, no
   * reply) fails the statement instead of stalling its caller forever. Workers set it
   * below their VT.
   */
  queryTimeoutMs?: number;
  /**
   * false: never name (prepare) a statement on these connections, for a pooler in
   * transaction mode (PgBouncer before 1.21), where the next statement may run on another
   * server connection that never saw the Parse. Default true.
   */
  preparedStatements?: boolean;
}

/**
 * A pg Client that sends every statement unnamed: a named statement is prepared once per
 * server connection, which a transaction-mode pooler does not keep. One switch here covers
 * every statement pgbus sends through its pools (runStatement names them all).
 */
class UnpreparedClient extends pg.Client {
  override query(...args: unknown[]): never {
    const [first] = args;
    if (first !== null && typeof first === "object" && "name" in first) {
      const { name: _name, ...unnamed } = first as { name?: string };
      args[0] = unnamed;
    }
    return (super.query as (...rest: unknown[]) => never)(...args);
  }
}

/**
 * Every connection pgbus opens: TCP keepalive so a dead peer is noticed by the kernel, and
 * a bound on connecting so a start against an unreachable host fails instead of hanging.
 */
export const CONNECTION_DEFAULTS = Object.freeze({ keepAlive: true, connectionTimeoutMillis: 10_000 });

export function createPool(clientConfig: pg.ClientConfig, options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    ...CONNECTION_DEFAULTS,
    ...clientConfig,
    ...(options.queryTimeoutMs !== undefined ? { query_timeout: options.queryTimeoutMs } : {}),
    max: options.max,
    application_name: options.applicationName,
    ...(options.preparedStatements === false ? { Client: UnpreparedClient } : {}),
    // Idle connections are closed so a quiet worker gives its connections back.
    idleTimeoutMillis: 30_000,
  });
  // An idle client losing its connection (database restart) must not crash the process;
  // the next query gets a fresh connection.
  pool.on("error", () => {});
  trackClients(pool);
  return pool;
}

/** A Queryable that runs a transaction on one connection of its own (a pg.Pool, or a share of one: pool-share.ts). */
export type TransactionalQueryable = Queryable & { connect(): Promise<pg.PoolClient> };

/** Runs `fn` inside BEGIN/COMMIT on one connection of `pool`, rolling back on any error. */
export async function withTransaction<T>(pool: TransactionalQueryable, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
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
