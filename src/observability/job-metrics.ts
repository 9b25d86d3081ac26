import type { Queryable } from "../db/queryable.ts";
import { ValidationError, toErrorRecord } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { SafeEmitter } from "./emitter.ts";
import type { WorkerEvents } from "./events.ts";
import * as sql from "./metrics-sql.ts";

/**
 * Upper bounds (seconds) of the job duration histogram's buckets; a last bucket takes the
 * longer runs. Stored by position in pgbus.job_metrics: append new bounds at the end only.
 */
export const DURATION_BUCKETS_SECONDS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** The four outcomes of pgbus_jobs_total: a run succeeded or failed; a failure was retried or its message went dead. */
export const JOB_OUTCOMES = ["succeeded", "failed", "retried", "dead"] as const;
export type JobOutcomeLabel = (typeof JOB_OUTCOMES)[number];

/** Counts and durations of one (queue, job), since the last flush (in a process) or in total (read back). */
export interface JobMetricsEntry {
  queue: string;
  job: string;
  counts: Record<JobOutcomeLabel, number>;
  durationCount: number;
  durationSumSeconds: number;
  /** Per bucket, not cumulative: DURATION_BUCKETS_SECONDS.length + 1 entries. */
  durationBuckets: number[];
}

export interface JobMetricsRecorderOptions {
  db: Queryable;
  emitter: SafeEmitter<WorkerEvents>;
  logger: Logger;
  /** How often the counts are added to pgbus.job_metrics. Default 5000. */
  flushIntervalMs?: number;
}

export const DEFAULT_METRICS_FLUSH_MS = 5_000;

function emptyEntry(queue: string, job: string): JobMetricsEntry {
  return {
    queue,
    job,
    counts: { succeeded: 0, failed: 0, retried: 0, dead: 0 },
    durationCount: 0,
    durationSumSeconds: 0,
    durationBuckets: new Array<number>(DURATION_BUCKETS_SECONDS.length + 1).fill(0),
  };
}

function bucketOf(seconds: number): number {
  const index = DURATION_BUCKETS_SECONDS.findIndex((bound) => seconds <= bound);
  return index === -1 ? DURATION_BUCKETS_SECONDS.length : index;
}

/**
 * Counts the jobs of this process's workers (from their events) in memory and adds the
 * counts to pgbus.job_metrics with one upsert every flushIntervalMs, and once more on stop.
 * Nothing is written per job: the cost on the hot path is an event and a few additions. A
 * flush that fails (database down, migration 0015 missing) keeps its counts for the next.
 */
export class JobMetricsRecorder {
  readonly #options: JobMetricsRecorderOptions;
  #pending = new Map<string, JobMetricsEntry>();
  #unsubscribe: Array<() => void> = [];
  #timer: NodeJS.Timeout | null = null;
  #flushing: Promise<void> = Promise.resolve();
  #failing = false;

  constructor(options: JobMetricsRecorderOptions) {
    const interval = options.flushIntervalMs;
    if (interval !== undefined && (!Number.isInteger(interval) || interval < 100)) {
      throw new ValidationError(
        "INVALID_OPTION",
        `metrics flushIntervalMs must be an integer of milliseconds >= 100, got ${String(interval)}`,
      );
    }
    this.#options = options;
  }

  start(): void {
    if (this.#timer) return;
    const { emitter } = this.#options;
    this.#unsubscribe = [
      emitter.on("job:success", (event) => this.#record(event.queue, event.job, "succeeded", event.durationMs)),
      emitter.on("job:failure", (event) => {
        this.#record(event.queue, event.job, "failed", event.durationMs);
        if (event.retryInMs !== null) this.#entry(event.queue, event.job).counts.retried++;
      }),
      emitter.on("job:dead", (event) => void this.#entry(event.queue, event.job).counts.dead++),
    ];
    this.#timer = setInterval(() => void this.flush(), this.#options.flushIntervalMs ?? DEFAULT_METRICS_FLUSH_MS);
    this.#timer.unref(); // counting alone must not keep a process alive
  }

  /** Stops counting and flushes what is left. Idempotent. */
  async stop(): Promise<void> {
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
    this.#unsubscribe = [];
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.flush();
  }

  /** Adds the counts since the last flush to pgbus.job_metrics (one statement; nothing when there is nothing). */
  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(() => this.#flushOnce());
    return this.#flushing;
  }

  #entry(queue: string, job: string): JobMetricsEntry {
    const key = `${queue}\u0000${job}`;
    let entry = this.#pending.get(key);
    if (!entry) this.#pending.set(key, (entry = emptyEntry(queue, job)));
    return entry;
  }

  #record(queue: string, job: string, outcome: "succeeded" | "failed", durationMs: number): void {
    const entry = this.#entry(queue, job);
    const seconds = durationMs / 1000;
    entry.counts[outcome]++;
    entry.durationCount++;
    entry.durationSumSeconds += seconds;
    entry.durationBuckets[bucketOf(seconds)]!++;
  }

  async #flushOnce(): Promise<void> {
    if (this.#pending.size === 0) return;
    const batch = this.#pending;
    this.#pending = new Map();
    const rows = [...batch.values()].map((entry) => ({
      queue_name: entry.queue,
      job_name: entry.job,
      ...entry.counts,
      duration_count: entry.durationCount,
      duration_sum_seconds: entry.durationSumSeconds,
      duration_buckets: entry.durationBuckets,
    }));
    try {
      await this.#options.db.query(sql.ADD_JOB_METRICS, [JSON.stringify(rows)]);
      if (this.#failing) this.#options.logger.info({}, "job metrics written again");
      this.#failing = false;
    } catch (error) {
      for (const entry of batch.values()) this.#mergeBack(entry);
      if (!this.#failing) {
        this.#options.logger.warn(
          { err: toErrorRecord(error).message },
          "writing job metrics to pgbus.job_metrics failed (database down, or `pgbus migrate` not run?); kept for the next flush",
        );
      }
      this.#failing = true;
    }
  }

  #mergeBack(entry: JobMetricsEntry): void {
    const into = this.#entry(entry.queue, entry.job);
    for (const outcome of JOB_OUTCOMES) into.counts[outcome] += entry.counts[outcome];
    into.durationCount += entry.durationCount;
    into.durationSumSeconds += entry.durationSumSeconds;
    entry.durationBuckets.forEach((count, index) => (into.durationBuckets[index]! += count));
  }
}

/** The recorder a Pgbus builds from its `metrics` option (false: none). */
export function jobMetricsRecorder(
  option: { flushIntervalMs?: number } | false | undefined,
  deps: Omit<JobMetricsRecorderOptions, "flushIntervalMs">,
): JobMetricsRecorder | null {
  return option === false ? null : new JobMetricsRecorder({ ...deps, flushIntervalMs: option?.flushIntervalMs });
}

interface JobMetricsRow {
  queue_name: string;
  job_name: string;
  succeeded: number;
  failed: number;
  retried: number;
  dead: number;
  duration_count: number;
  duration_sum_seconds: number;
  duration_buckets: number[];
}

/** The cluster's totals, one entry per (queue, job). */
export async function readJobMetrics(db: Queryable): Promise<JobMetricsEntry[]> {
  const rows = (await db.query(sql.LIST_JOB_METRICS)).rows as JobMetricsRow[];
  return rows.map((row) => {
    const entry = emptyEntry(row.queue_name, row.job_name);
    for (const outcome of JOB_OUTCOMES) entry.counts[outcome] = row[outcome];
    entry.durationCount = row.duration_count;
    entry.durationSumSeconds = row.duration_sum_seconds;
    row.duration_buckets.forEach((count, index) => (entry.durationBuckets[Math.min(index, DURATION_BUCKETS_SECONDS.length)]! += count));
    return entry;
  });
}

/** Connections to this database held by pgbus, by application_name. */
export async function readPgbusConnections(db: Queryable): Promise<Array<{ application: string; count: number }>> {
  const rows = (await db.query(sql.PGBUS_CONNECTIONS)).rows as Array<{ application_name: string; count: number }>;
  return rows.map((row) => ({ application: row.application_name, count: row.count }));
}
