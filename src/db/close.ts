import type pg from "pg";

/**
 * How long a goodbye to PostgreSQL may take. Ending a connection waits for the server to
 * close it; a connection gone silent (a network partition, a stuck middlebox) never
 * answers, so stop() would hang forever. Past this bound the socket is destroyed instead.
 */
export const END_TIMEOUT_MS = 2_000;

type Destroyable = { connection?: { stream?: { destroy(): void } } };

/** Drops a connection at once, without a goodbye: for one that went silent. */
export function destroySocket(client: pg.Client | pg.PoolClient): void {
  (client as unknown as Destroyable).connection?.stream?.destroy();
}

/** Ends one client, destroying its socket if the server does not answer in time. */
export async function endClient(client: pg.Client | pg.PoolClient, ms = END_TIMEOUT_MS): Promise<void> {
  const ended = (client as pg.Client)
    .end()
    .then(() => true)
    .catch(() => true);
  if (!(await Promise.race([ended, delay(ms)]))) destroySocket(client);
}

/**
 * Ends a pool made by createPool, destroying the sockets of its connections if they do not
 * close in time. The pool's connections are tracked through its public connect/remove events.
 */
export async function endPool(pool: pg.Pool, ms = END_TIMEOUT_MS): Promise<void> {
  const ended = pool
    .end()
    .then(() => true)
    .catch(() => true);
  if (await Promise.race([ended, delay(ms)])) return;
  for (const client of trackedClients.get(pool) ?? []) destroySocket(client);
}

const trackedClients = new WeakMap<pg.Pool, Set<pg.PoolClient>>();

/** Lets endPool reach the pool's connections. */
export function trackClients(pool: pg.Pool): void {
  const clients = new Set<pg.PoolClient>();
  trackedClients.set(pool, clients);
  pool.on("connect", (client) => clients.add(client));
  pool.on("remove", (client) => clients.delete(client));
}

export function delay(ms: number): Promise<false> {
  return new Promise((resolve) => setTimeout(() => resolve(false), ms).unref());
}
