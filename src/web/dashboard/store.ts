import type pg from "pg";
import { type Queryable, withTransaction } from "../../db/queryable.ts";
import { archivedSince } from "../../queue/admin-sql.ts";
import { QueueClient } from "../../queue/client.ts";
import { dlqName, isDlqName, queueTable } from "../../queue/names.ts";
import { pausedQueues } from "../../queue/pause.ts";
import * as sql from "./sql.ts";

/**
 * Every read of the dashboard runs here, each in a transaction of its own with a statement
 * timeout, so a slow page fails fast instead of holding a connection; writes reuse the
 * admin functions of queue/ through the same wrapper.
 */

/** Rows counted exactly per queue before the estimate takes over (sql.queueStats). */
export const EXACT_COUNT_CAP = 10_000;

/** Archived messages (per queue) and failed runs counted per minute for the overview's sparklines; a busier minute shows as this. */
export const SPARKLINE_MINUTE_CAP = 5_000;

export interface QueueStats {
  name: string;
  depth: number;
  /** true when `depth` is the planner's estimate (a queue past EXACT_COUNT_CAP). */
  estimated: boolean;
  /** Messages a worker could claim now; null when the queue is past the cap. */
  visible: number | null;
  oldestAgeSec: number | null;
  paused: boolean;
  dlq: string | null;
  dlqDepth: number | null;
}

export class DashboardStore {
  constructor(
    readonly pool: pg.Pool,
    readonly statementTimeoutMs: number,
  ) {}

  /** Runs `work` in a transaction whose statements time out after statementTimeoutMs. */
  run<T>(work: (db: Queryable) => Promise<T>): Promise<T> {
    return withTransaction(this.pool, async (client) => {
      await client.query(sql.SET_STATEMENT_TIMEOUT, [String(this.statementTimeoutMs)]);
      return work(client);
    });
  }

  /** Every queue but the DLQs that belong to one, with capped counts (see EXACT_COUNT_CAP). */
  queueStats(): Promise<QueueStats[]> {
    return this.run((db) => collectQueueStats(db));
  }

  /** Messages archived in the last minute, per queue (the queues page's throughput column). */
  archivedLastMinute(queues: readonly string[]): Promise<Map<string, number>> {
    return this.run(async (db) => {
      const counts = new Map<string, number>();
      for (const queue of queues) counts.set(queue, ((await db.query(archivedSince(queue), [60])).rows[0] as { count: number }).count);
      return counts;
    });
  }

  /** Per minute over the last `minutes` (oldest first): messages archived in every queue, and failed runs. */
  sparklines(queues: readonly string[], minutes: number): Promise<{ archived: number[]; failed: number[] }> {
    return this.run(async (db) => {
      const archived = new Array<number>(minutes).fill(0);
      const failed = new Array<number>(minutes).fill(0);
      const add = (series: number[], rows: unknown[]) => {
        for (const row of rows as Array<{ minute: number; count: number }>)
          if (row.minute >= 0 && row.minute < minutes) series[minutes - 1 - row.minute]! += row.count;
      };
      for (const queue of queues) add(archived, (await db.query(sql.archivedPerMinute(queue), [minutes, SPARKLINE_MINUTE_CAP])).rows);
      add(failed, (await db.query(sql.FAILURES_PER_MINUTE, [minutes, SPARKLINE_MINUTE_CAP])).rows);
      return { archived, failed };
    });
  }
}

/**
 * The queues (but the DLQs that belong to one) with capped counts, in one transaction of
 * the caller's; with `only`, just that queue (an empty list when it does not exist).
 */
export async function collectQueueStats(db: Queryable, only?: string): Promise<QueueStats[]> {
  const names = (await new QueueClient(db).listQueues()).map((queue) => queue.name);
  const existing = new Set(names);
  const paused = new Set((await pausedQueues(db)).map((entry) => entry.queue));
  const stats: QueueStats[] = [];
  for (const name of names) {
    if ((only !== undefined && name !== only) || (isDlqName(name) && existing.has(name.slice(0, -4)))) continue;
    const own = await countQueue(db, name);
    const dlq = existing.has(dlqName(name)) ? dlqName(name) : null;
    const dlqDepth = dlq === null ? null : (await countQueue(db, dlq)).depth;
    stats.push({ name, ...own, paused: paused.has(name), dlq, dlqDepth });
  }
  return stats;
}

async function countQueue(
  db: Queryable,
  queue: string,
): Promise<{ depth: number; estimated: boolean; visible: number | null; oldestAgeSec: number | null }> {
  const row = (await db.query(sql.queueStats(queue), [EXACT_COUNT_CAP, queueTable(queue)])).rows[0] as {
    counted: number;
    visible: number;
    estimate: number | null;
    oldest_age_sec: number | null;
  };
  const exact = row.counted < EXACT_COUNT_CAP;
  return {
    depth: exact ? row.counted : Math.max(Math.round(row.estimate ?? 0), EXACT_COUNT_CAP),
    estimated: !exact,
    visible: exact ? row.visible : null,
    oldestAgeSec: row.oldest_age_sec === null ? null : Math.max(0, row.oldest_age_sec),
  };
}
