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
  let index = 0;
  while (index < DURATION_BUCKETS_SECONDS.length && seconds > DURATION_BUCKETS_SECONDS[index]!) index++;
  return index;
}

/** Job counts and durations in memory, by (queue, job), until drained. */
export class JobMetricsTally {
  /** By queue, then job: two lookups per counted job, no key string built. */
  #entries = new Map<string, Map<string, JobMetricsEntry>>();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  run(queue: string, job: string, outcome: "succeeded" | "failed", durationMs: number): void {
    const entry = this.#entry(queue, job);
    const seconds = durationMs / 1000;
    entry.counts[outcome]++;
    entry.durationCount++;
    entry.durationSumSeconds += seconds;
    entry.durationBuckets[bucketOf(seconds)]!++;
  }

  count(queue: string, job: string, outcome: "retried" | "dead"): void {
    this.#entry(queue, job).counts[outcome]++;
  }

  /** Adds entries counted elsewhere (another process's, or a flush's that failed). */
  add(entries: readonly JobMetricsEntry[]): void {
    for (const entry of entries) {
      const into = this.#entry(entry.queue, entry.job);
      for (const outcome of JOB_OUTCOMES) into.counts[outcome] += entry.counts[outcome];
      into.durationCount += entry.durationCount;
      into.durationSumSeconds += entry.durationSumSeconds;
      entry.durationBuckets.forEach((count, index) => (into.durationBuckets[index]! += count));
    }
  }

  /** Everything counted since the last drain; the tally starts afresh. */
  drain(): JobMetricsEntry[] {
    const entries = [...this.#entries.values()].flatMap((jobs) => [...jobs.values()]);
    this.#entries = new Map();
    this.#size = 0;
    return entries;
  }

  #entry(queue: string, job: string): JobMetricsEntry {
    let jobs = this.#entries.get(queue);
    if (!jobs) this.#entries.set(queue, (jobs = new Map()));
    let entry = jobs.get(job);
    if (!entry) {
      jobs.set(job, (entry = emptyEntry(queue, job)));
      this.#size++;
    }
    return entry;
  }
}

/** Where job events come from: a worker's emitter, or a Pgbus (its `on`). */
export type JobEventSource = Pick<SafeEmitter<WorkerEvents>, "on">;

/** Counts the jobs `source` reports into `tally`; returns the unsubscribe. The hot path pays an event and a few additions. */
export function countJobs(source: JobEventSource, tally: JobMetricsTally): () => void {
  const off = [
    source.on("job:success", (event) => tally.run(event.queue, event.job, "succeeded", event.durationMs)),
    source.on("job:failure", (event) => {
      tally.run(event.queue, event.job, "failed", event.durationMs);
      if (event.retryInMs !== null) tally.count(event.queue, event.job, "retried");
    }),
    source.on("job:dead", (event) => tally.count(event.queue, event.job, "dead")),
  ];
  return () => off.forEach((unsubscribe) => unsubscribe());
}

/** Adds counts to the totals in pgbus.job_metrics: one statement, whatever the number of (queue, job) pairs. */
export async function addJobMetrics(db: Queryable, entries: readonly JobMetricsEntry[]): Promise<void> {
  if (entries.length === 0) return;
  const rows = entries.map((entry) => ({
    queue_name: entry.queue,
    job_name: entry.job,
    ...entry.counts,
    duration_count: entry.durationCount,
    duration_sum_seconds: entry.durationSumSeconds,
    duration_buckets: entry.durationBuckets,
  }));
  await db.query(sql.ADD_JOB_METRICS, [JSON.stringify(rows)]);
}

export interface JobMetricsFlusherOptions {
  db: Queryable;
  tally: JobMetricsTally;
  logger: Logger;
  /** Default 5000. */
  flushIntervalMs?: number;
}

/**
 * Adds a tally's counts to pgbus.job_metrics every flushIntervalMs, and once more on stop.
 * A flush that fails (database down, migration 0015 missing) puts its counts back for the
 * next one; the failure is logged once per outage.
 */
export class JobMetricsFlusher {
  readonly #options: JobMetricsFlusherOptions;
  #timer: NodeJS.Timeout | null = null;
  #flushing: Promise<void> = Promise.resolve();
  #failing = false;

  constructor(options: JobMetricsFlusherOptions) {
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
    this.#timer = setInterval(() => void this.flush(), this.#options.flushIntervalMs ?? DEFAULT_METRICS_FLUSH_MS);
    this.#timer.unref(); // counting alone must not keep a process alive
  }

  /** Stops the timer and flushes what is left. Idempotent. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.flush();
  }

  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(() => this.#flushOnce());
    return this.#flushing;
  }

  async #flushOnce(): Promise<void> {
    const { db, tally, logger } = this.#options;
    if (tally.size === 0) return;
    const entries = tally.drain();
    try {
      await addJobMetrics(db, entries);
      if (this.#failing) logger.info({}, "job metrics written again");
      this.#failing = false;
    } catch (error) {
      tally.add(entries);
      if (!this.#failing) {
        logger.warn(
          { err: toErrorRecord(error).message },
          "writing job metrics to pgbus.job_metrics failed (database down, or `pgbus migrate` not run?); kept for the next flush",
        );
      }
      this.#failing = true;
    }
  }
}

/** What a Pgbus runs for the workers it builds in this process: count their jobs, flush every few seconds. */
export interface JobMetricsRecorder {
  start(): void;
  /** Adds what was counted since the last flush to pgbus.job_metrics now. */
  flush(): Promise<void>;
  stop(): Promise<void>;
}

/** The recorder a Pgbus builds from its `metrics` option (false: none). */
export function jobMetricsRecorder(
  option: { flushIntervalMs?: number } | false | undefined,
  deps: { db: Queryable; emitter: JobEventSource; logger: Logger },
): JobMetricsRecorder | null {
  if (option === false) return null;
  const tally = new JobMetricsTally();
  const flusher = new JobMetricsFlusher({ db: deps.db, tally, logger: deps.logger, flushIntervalMs: option?.flushIntervalMs });
  let unsubscribe: (() => void) | null = null;
  return {
    start() {
      unsubscribe ??= countJobs(deps.emitter, tally);
      flusher.start();
    },
    flush: () => flusher.flush(),
    async stop() {
      unsubscribe?.();
      unsubscribe = null;
      await flusher.stop();
    },
  };
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
