import type pg from "pg";
import type { Queryable } from "./queryable.ts";

export interface PoolShareOptions {
  /** Statements of this share running at once: the connections it may hold. */
  concurrency: number;
  /** Client-side bound on each statement of this share (see PoolOptions.queryTimeoutMs). */
  queryTimeoutMs?: number;
}

/** A Queryable over part of a pool; connect() checks out one of its connections (for a transaction); give() hands its room back. */
export interface PoolShare extends Queryable {
  connect(): Promise<pg.PoolClient>;
  give(): void;
}

type QueryConfig = { text: string; values?: unknown[]; name?: string; query_timeout?: number };

/**
 * A bounded share of a pg.Pool: at most `concurrency` of its statements run at once, and
 * the pool grows by that much for as long as the share is held, so the share never waits
 * for the pool's other users nor they for it. A worker borrows one from its bus's pool
 * instead of opening a pool of its own: the connection the bus used to enqueue is the one
 * the worker claims on, so a process with one bus and one worker holds two connections
 * plus its LISTEN instead of a third one left idle in the bus's pool.
 */
export function sharePool(pool: pg.Pool, options: PoolShareOptions): PoolShare {
  const limits = pool.options as { max?: number };
  limits.max = (limits.max ?? 10) + options.concurrency;
  let running = 0;
  const waiting: Array<() => void> = [];
  let given = false;
  const run = async <T>(work: () => Promise<T>): Promise<T> => {
    if (running >= options.concurrency) await new Promise<void>((resolve) => waiting.push(resolve));
    else running++;
    try {
      return await work();
    } finally {
      // The slot passes straight to the next waiter, so `running` stays counted.
      const next = waiting.shift();
      if (next) next();
      else running--;
    }
  };
  return {
    query(textOrConfig: string | QueryConfig, values?: unknown[]) {
      const config: QueryConfig = typeof textOrConfig === "string" ? { text: textOrConfig, values } : { ...textOrConfig };
      if (options.queryTimeoutMs !== undefined) config.query_timeout = options.queryTimeoutMs;
      return run(() => pool.query(config as pg.QueryConfig));
    },
    connect() {
      // Counted as one statement of the share until the client is released.
      return new Promise<pg.PoolClient>((resolve, reject) => {
        void run(async () => {
          let client: pg.PoolClient;
          try {
            client = await pool.connect();
          } catch (error) {
            reject(error);
            return;
          }
          await new Promise<void>((released) => {
            const release = client.release.bind(client);
            client.release = (error?: Error | boolean) => {
              released();
              return release(error);
            };
            resolve(client);
          });
        });
      });
    },
    give() {
      if (given) return;
      given = true;
      limits.max = (limits.max ?? options.concurrency) - options.concurrency;
    },
  } as PoolShare;
}
