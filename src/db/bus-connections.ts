import type pg from "pg";
import { ValidationError } from "../errors.ts";
import { endPool } from "./close.ts";
import { sharePool } from "./pool-share.ts";
import { type TransactionalQueryable, clientConfigOf, createPool } from "./queryable.ts";

/** Claim/ack connections of one worker, whatever its capacity: one per claim in flight. */
export const WORKER_CONNECTIONS = 2;

export interface BusConnectionOptions {
  connectionString?: string;
  pool?: pg.Pool;
  directUrl?: string;
  preparedStatements?: boolean;
}

/**
 * The connection layout of one Pgbus: its pool (its own, or the application's), the
 * connections of the workers it builds, and where connections that keep session state
 * (LISTEN) go. Behind a transaction-mode pooler the pools send statements unnamed and
 * LISTEN goes to `directUrl`.
 */
export class BusConnections {
  readonly pool: pg.Pool;
  readonly ownsPool: boolean;
  /** Whether statements may be named (prepared once per connection). */
  readonly prepared: boolean;
  /** For connections that keep session state (LISTEN): the direct URL when one is given. */
  readonly session: pg.ClientConfig;

  constructor(options: BusConnectionOptions) {
    if (!options.pool && !options.connectionString) {
      throw new ValidationError("INVALID_OPTION", "Pgbus needs connectionString (a PostgreSQL URL) or pool (a pg.Pool)");
    }
    if (options.preparedStatements !== undefined && typeof options.preparedStatements !== "boolean") {
      throw new ValidationError(
        "INVALID_OPTION",
        `Pgbus option preparedStatements must be true or false, got ${String(options.preparedStatements)}`,
      );
    }
    if (options.directUrl !== undefined && (typeof options.directUrl !== "string" || options.directUrl === "")) {
      throw new ValidationError(
        "INVALID_OPTION",
        `Pgbus option directUrl must be a PostgreSQL URL, got ${JSON.stringify(options.directUrl)}`,
      );
    }
    this.prepared = options.preparedStatements ?? true;
    this.ownsPool = !options.pool;
    this.pool =
      options.pool ??
      createPool({ connectionString: options.connectionString }, { max: 10, applicationName: "pgbus", preparedStatements: this.prepared });
    this.session = options.directUrl ? { connectionString: options.directUrl } : this.#clientConfig();
  }

  /**
   * A worker's claim/ack connections: a share of the bus's own pool (its idle connection is
   * the worker's first, so one bus and one worker hold 2 connections plus LISTEN), or a
   * pool of the worker's own when the pool is the application's, which is not grown
   * behind its back. Statements are bounded by `queryTimeoutMs`. `release` gives them back.
   */
  forWorker(queryTimeoutMs: number): { db: TransactionalQueryable; release(): Promise<void> } {
    if (this.ownsPool) {
      const share = sharePool(this.pool, { concurrency: WORKER_CONNECTIONS, queryTimeoutMs });
      return { db: share, release: async () => share.give() };
    }
    const pool = createPool(this.#clientConfig(), {
      max: WORKER_CONNECTIONS,
      applicationName: "pgbus:worker",
      preparedStatements: this.prepared,
      queryTimeoutMs,
    });
    return { db: pool, release: () => endPool(pool) };
  }

  async close(): Promise<void> {
    if (this.ownsPool) await endPool(this.pool);
  }

  /** How to open more connections like the bus's own. */
  #clientConfig(): pg.ClientConfig {
    return clientConfigOf(this.ownsPool ? (this.pool.options.connectionString as string) : this.pool);
  }
}
