import { z } from "zod";
import { PgbusError, ValidationError } from "../errors.ts";
import { partitionOptions } from "../queue/client-args.ts";
import type { Queryable } from "../db/queryable.ts";
import { type CreateQueueOptions, QueueClient } from "../queue/client.ts";
import { MAX_QUEUE_NAME_LENGTH, validateQueueName } from "../queue/names.ts";
import { ACK_MODES, type AckMode, type QueueRateLimit } from "../worker/options.ts";
import { type CircuitBreakerOptions, type ResolvedCircuitBreaker, resolveCircuitBreaker } from "../queue/breaker.ts";

/**
 * The config file's `queues` section: per-queue settings, keyed by queue name.
 *
 *   queues: {
 *     events: { ackMode: "delete" },
 *     orders: { fifo: true },                                          // claim by FIFO group
 *     audit: { partitioned: { interval: "1 day", retention: "7 days" } }, // pg_partman
 *     clicks: { unlogged: true },
 *     payments: { circuitBreaker: { threshold: 5, baseMs: 30_000, maxMs: 600_000 } },
 *     api: { rateLimit: { limit: 50, intervalMs: 1_000 } },           // starts, across processes
 *   }
 *
 * `partitioned` and `unlogged` say how `pgbus start` creates the queue when it does not
 * exist yet (the same rules and errors as createQueue); `fifo` makes every worker of
 * `pgbus start` claim it by FIFO group (worker option `fifo`); a `circuitBreaker` (opt-in:
 * `true` or { threshold, baseMs, maxMs }) is given to every worker that claims from it.
 */

/** One queue's settings after resolution: ackMode filled from the global one. */
export interface ResolvedQueueSettings {
  ackMode: AckMode;
  fifo: boolean;
  partitioned?: { interval: string; retention: string };
  unlogged?: boolean;
  circuitBreaker?: ResolvedCircuitBreaker;
  /** At most `limit` job starts of the queue in any `intervalMs` window, across every worker process. */
  rateLimit?: QueueRateLimit;
}

export function isQueueName(value: string): boolean {
  try {
    validateQueueName(value, MAX_QUEUE_NAME_LENGTH);
    return true;
  } catch {
    return false;
  }
}

export const QUEUE_NAME_RULE = `a queue name (1-${MAX_QUEUE_NAME_LENGTH} characters of a-z, 0-9 and "_")`;

/**
 * createQueue's own check, so the file and the API refuse the same values with the same
 * words; its messages name the bad interval or retention, so the whole object is shown
 * only when it is not an object at all.
 */
const partitioned = z.unknown().transform((value, ctx) => {
  try {
    return partitionOptions(value as { interval: string; retention: string });
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error;
    const shown = typeof value === "object" && value !== null ? undefined : value;
    ctx.addIssue({ code: "custom", input: shown, message: error.message });
    return z.NEVER;
  }
});

/** A queue's circuit breaker: `true` (the defaults) or { threshold?, baseMs?, maxMs? }, checked by the worker's own rules. */
const circuitBreaker = z.unknown().transform((value, ctx) => {
  try {
    return resolveCircuitBreaker(value as CircuitBreakerOptions, "");
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error;
    ctx.addIssue({ code: "custom", input: value, message: error.message, params: { code: error.code } });
    return z.NEVER;
  }
});

const positiveInteger = z.int({ error: "must be an integer >= 1" }).min(1, { error: "must be an integer >= 1" });
const rateLimit = z.strictObject(
  { limit: positiveInteger, intervalMs: positiveInteger },
  { error: (issue) => (issue.code === "unrecognized_keys" ? "limit, intervalMs" : "must be an object with keys limit, intervalMs") },
);

const KEYS = "ackMode, fifo, partitioned, unlogged, circuitBreaker, rateLimit";

const settings = z
  .strictObject(
    {
      ackMode: z.enum(ACK_MODES).optional(),
      fifo: z.boolean({ error: "must be true or false" }).optional(),
      partitioned: partitioned.optional(),
      unlogged: z.boolean({ error: "must be true or false" }).optional(),
      circuitBreaker: circuitBreaker.optional(),
      rateLimit: rateLimit.optional(),
    },
    { error: (issue) => (issue.code === "unrecognized_keys" ? KEYS : `must be an object with keys ${KEYS}`) },
  )
  .superRefine((entry, ctx) => {
    if (entry.partitioned !== undefined && entry.unlogged === true) {
      ctx.addIssue({
        code: "custom",
        path: ["unlogged"],
        input: true,
        message: "a queue is either unlogged or partitioned, not both; remove one of them",
      });
    }
  });

export const queueSettings = z.record(z.string().refine(isQueueName, { error: `key must be ${QUEUE_NAME_RULE}` }), settings, {
  error: `must be an object mapping queue names to { ${KEYS} }`,
});

export function resolveQueueSettings(
  queues: z.output<typeof queueSettings>,
  globalAckMode: AckMode,
): Record<string, ResolvedQueueSettings> {
  return Object.fromEntries(
    Object.entries(queues).map(([name, { ackMode, fifo, partitioned, unlogged, circuitBreaker, rateLimit }]) => [
      name,
      {
        ackMode: ackMode ?? globalAckMode,
        fifo: fifo ?? false,
        ...(partitioned !== undefined ? { partitioned } : {}),
        ...(unlogged !== undefined ? { unlogged } : {}),
        ...(circuitBreaker ? { circuitBreaker } : {}),
        ...(rateLimit ? { rateLimit } : {}),
      },
    ]),
  );
}

/** Whether workers claim `queue` by FIFO group. */
export function fifoFor(queues: Readonly<Record<string, ResolvedQueueSettings>>, queue: string): boolean {
  return queues[queue]?.fifo ?? false;
}

/** The queues the file gives a kind (partitioned or unlogged), with createQueue's options for each. */
export function queuesToCreate(queues: Readonly<Record<string, ResolvedQueueSettings>>): Array<[string, CreateQueueOptions]> {
  return Object.entries(queues)
    .filter(([, entry]) => entry.partitioned !== undefined || entry.unlogged === true)
    .map(([name, entry]) => [name, entry.partitioned ? { partitioned: entry.partitioned } : { unlogged: true }]);
}

/**
 * Creates the queues the file gives a kind, as that kind; `pgbus start` does it before it
 * forks any worker, since a worker creates a queue it misses as a plain one. A queue that
 * exists already is left as it is, whatever its kind.
 */
export async function createConfiguredQueues(db: Queryable, queues: Readonly<Record<string, ResolvedQueueSettings>>): Promise<void> {
  const client = new QueueClient(db);
  for (const [name, options] of queuesToCreate(queues)) {
    try {
      await client.createQueue(name, options);
    } catch (error) {
      const kind = options.partitioned ? "partitioned" : "unlogged";
      const why = error instanceof Error ? error.message : String(error);
      throw new PgbusError("INVALID_CONFIG", `config queues.${name}: cannot create it ${kind}: ${why}`, { cause: error });
    }
  }
}
