import type { IncomingMessage, ServerResponse } from "node:http";
import { Counter, Gauge, Histogram, type MetricType, Registry } from "prom-client";
import { ValidationError } from "../errors.ts";
import { DURATION_BUCKETS_SECONDS, JOB_OUTCOMES } from "../observability/job-metrics.ts";
import { type WebDatabaseOptions, openWebDatabase } from "./database.ts";
import { type WebReply, isRead, methodNotAllowed, sendReply, toResponse } from "./http.ts";
import { type MetricsSnapshot, readMetricsSnapshot } from "./metrics-snapshot.ts";

export interface MetricsHandlerOptions extends WebDatabaseOptions {
  /**
   * Register pgbus's metrics in this registry (e.g. prom-client's default `register`, next
   * to the application's own) instead of a registry of their own.
   */
  registry?: Registry;
  /** A snapshot read from PostgreSQL is reused for this long, so concurrent scrapes read once. Default 1000. */
  cacheMs?: number;
}

/** Serves pgbus's Prometheus metrics; see docs/observability.md. */
export interface MetricsHandler {
  readonly registry: Registry;
  /** The metrics in Prometheus text format. */
  render(): Promise<string>;
  /** A Web fetch handler (Hono, Next.js route handlers, Bun): answers any GET with the metrics. */
  fetch(request: Request): Promise<Response>;
  /** A Node handler (http, Express, Fastify's raw req/res, Koa's ctx.req/ctx.res). */
  node(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** Closes the pool it opened for connectionString (not a bus's). */
  close(): Promise<void>;
}

const PROCESS_LABELS = ["process", "role", "host", "pid"] as const;

/**
 * The job duration histogram as stored (per-bucket counts summed over every process):
 * prom-client's Histogram only counts observations made in this process, so get() is
 * replaced by one that reports the stored buckets, cumulated as Prometheus expects.
 */
const DURATION_METRIC = "pgbus_job_duration_seconds";
/** prom-client types MetricType as an enum it does not export at run time; its values are these strings. */
const HISTOGRAM = "histogram" as unknown as MetricType;
const DURATION_HELP = "How long job runs took (perform only), by queue and job, across every worker process";

class StoredDurationHistogram extends Histogram<"queue" | "job"> {
  readonly #snapshot: () => Promise<MetricsSnapshot>;

  constructor(registry: Registry, snapshot: () => Promise<MetricsSnapshot>) {
    super({
      name: DURATION_METRIC,
      help: DURATION_HELP,
      labelNames: ["queue", "job"],
      buckets: [...DURATION_BUCKETS_SECONDS],
      registers: [registry],
    });
    this.#snapshot = snapshot;
  }

  override get(): ReturnType<Histogram<"queue" | "job">["get"]> {
    return this.#exposition();
  }

  /** What prom-client's registry calls for the text format, when a metric has it (Histogram does; untyped). */
  getForPromString(): ReturnType<Histogram<"queue" | "job">["get"]> {
    return this.#exposition();
  }

  async #exposition(): ReturnType<Histogram<"queue" | "job">["get"]> {
    const values: Array<{ value: number; labels: Record<string, string | number>; metricName: string }> = [];
    const [bucket, sum, count] = ["_bucket", "_sum", "_count"].map((suffix) => DURATION_METRIC + suffix) as [string, string, string];
    for (const entry of (await this.#snapshot()).jobs) {
      const labels = { queue: entry.queue, job: entry.job };
      let cumulative = 0;
      DURATION_BUCKETS_SECONDS.forEach((bound, index) => {
        cumulative += entry.durationBuckets[index] ?? 0;
        values.push({ value: cumulative, labels: { ...labels, le: bound }, metricName: bucket });
      });
      values.push({ value: entry.durationCount, labels: { ...labels, le: "+Inf" }, metricName: bucket });
      values.push({ value: entry.durationSumSeconds, labels, metricName: sum });
      values.push({ value: entry.durationCount, labels, metricName: count });
    }
    return { name: DURATION_METRIC, help: DURATION_HELP, type: HISTOGRAM, values, aggregator: "sum", collect: () => {} };
  }
}

function processLabels(process: MetricsSnapshot["processes"][number]): Record<(typeof PROCESS_LABELS)[number], string> {
  return { process: process.id, role: process.role, host: process.host, pid: String(process.pid) };
}

function registerMetrics(registry: Registry, snapshot: () => Promise<MetricsSnapshot>): void {
  const gauge = <L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    fill: (set: (labels: Record<L, string>, value: number) => void, snap: MetricsSnapshot) => void,
  ): void => {
    new Gauge<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const snap = await snapshot();
        this.reset();
        fill((labels, value) => this.set(labels as never, value), snap);
      },
    });
  };
  gauge("pgbus_queue_depth", "Messages in the queue, visible or not", ["queue"], (set, snap) => {
    for (const q of snap.queues) set({ queue: q.queue }, q.depth);
  });
  gauge("pgbus_queue_oldest_age_seconds", "Age of the oldest message in the queue (0 when empty)", ["queue"], (set, snap) => {
    for (const q of snap.queues) set({ queue: q.queue }, q.oldestAgeSec);
  });
  gauge("pgbus_worker_busy", "Jobs running in the process at its last heartbeat", PROCESS_LABELS, (set, snap) => {
    for (const p of snap.processes) if (p.capacity !== null) set(processLabels(p), p.busy);
  });
  gauge("pgbus_worker_capacity", "Jobs the process may run at once", PROCESS_LABELS, (set, snap) => {
    for (const p of snap.processes) if (p.capacity !== null) set(processLabels(p), p.capacity);
  });
  gauge("pgbus_process_heartbeat_age_seconds", "Seconds since the process's last heartbeat", PROCESS_LABELS, (set, snap) => {
    for (const p of snap.processes) set(processLabels(p), p.beatAgeSec);
  });
  gauge("pgbus_connections", "Connections to this database held by pgbus, by application_name", ["application"], (set, snap) => {
    for (const c of snap.connections) set({ application: c.application }, c.count);
  });
  new Counter<"queue" | "job" | "outcome">({
    name: "pgbus_jobs_total",
    help: "Job runs by outcome (succeeded, failed; a failure is then retried or dead), across every worker process",
    labelNames: ["queue", "job", "outcome"],
    registers: [registry],
    async collect() {
      const snap = await snapshot();
      this.reset();
      for (const entry of snap.jobs) {
        for (const outcome of JOB_OUTCOMES) this.inc({ queue: entry.queue, job: entry.job, outcome }, entry.counts[outcome]);
      }
    },
  });
  new StoredDurationHistogram(registry, snapshot);
}

/**
 * /metrics in Prometheus text format. Every figure is read from PostgreSQL at scrape time
 * (job counts from pgbus.job_metrics, where every worker process adds its own), so any
 * process may serve it and the counters are the cluster's, whichever process is scraped.
 */
export function createMetricsHandler(options: MetricsHandlerOptions): MetricsHandler {
  const cacheMs = options.cacheMs ?? 1_000;
  if (!Number.isFinite(cacheMs) || cacheMs < 0) {
    throw new ValidationError("INVALID_OPTION", `metrics cacheMs must be a number of milliseconds >= 0, got ${String(options.cacheMs)}`);
  }
  const database = openWebDatabase(options, "createMetricsHandler");
  const registry = options.registry ?? new Registry();
  let cached: { at: number; snapshot: Promise<MetricsSnapshot> } | null = null;
  const snapshot = (): Promise<MetricsSnapshot> => {
    if (!cached || performance.now() - cached.at > cacheMs) {
      const read = readMetricsSnapshot(database.pool);
      read.catch(() => (cached = null)); // a failed read is not cached
      cached = { at: performance.now(), snapshot: read };
    }
    return cached.snapshot;
  };
  registerMetrics(registry, snapshot);
  const reply = async (): Promise<WebReply> => {
    try {
      return { status: 200, contentType: registry.contentType, body: await registry.metrics() };
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      return { status: 503, contentType: "text/plain; charset=utf-8", body: `pgbus metrics unavailable: ${message}\n` };
    }
  };
  return {
    registry,
    render: () => registry.metrics(),
    async fetch(request) {
      return toResponse(isRead(request.method) ? await reply() : methodNotAllowed, request.method);
    },
    async node(req, res) {
      sendReply(res, isRead(req.method) ? await reply() : methodNotAllowed, req.method);
    },
    close: () => database.close(),
  };
}
