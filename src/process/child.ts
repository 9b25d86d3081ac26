import { randomUUID } from "node:crypto";
import { Pgbus } from "../bus.ts";
import { type ResolvedConfig, ackModeFor, circuitBreakerFor } from "../config/schema.ts";
import { WILDCARD } from "../config/queue-dsl.ts";
import { fifoFor } from "../config/queue-settings.ts";
import { ValidationError } from "../errors.ts";
import { loadJobsModule } from "../jobs/registry.ts";
import type { Logger } from "../logger.ts";
import { NOTIFY_CHANNEL } from "../worker/notifications.ts";
import type { WorkerStats } from "../worker/worker.ts";
import { JobMetricsTally, countJobs } from "../observability/job-metrics.ts";
import { ChildBeat } from "./child-beat.ts";
import { ipcNotifications } from "./ipc-notifications.ts";
import { Maintenance } from "./maintenance.ts";
import { startSchedulerChild } from "./scheduler.ts";
import type { ChildMessage, ChildRole, ChildSnapshot, ChildStats, ParentMessage } from "./messages.ts";

/**
 * What runs inside a forked child, per role; child-main.ts owns the process (IPC, signals,
 * exit codes) and this file only builds and stops the role's parts.
 */

export type InitMessage = Extract<ParentMessage, { type: "init" }>;
export type ReadyMessage = Extract<ChildMessage, { type: "ready" }>;

export interface ChildHooks {
  send(message: ChildMessage): void;
  /** The child wants to be replaced (job count or memory limit): stop it and exit with RECYCLE_EXIT_CODE. */
  recycle(reason: string): void;
}

export interface RunningChild {
  readonly ready: ReadyMessage;
  /** Graceful: in-flight work finishes (up to shutdownTimeoutMs), the heartbeat row is deleted. Idempotent. */
  stop(): Promise<void>;
}

/** Builds and starts the role; rejects when it cannot (the child then exits with BOOT_FAILURE_EXIT_CODE). */
export async function startChild(init: InitMessage, logger: Logger, hooks: ChildHooks): Promise<RunningChild> {
  const role: ChildRole = init.role;
  switch (role.kind) {
    case "worker":
      return startWorker(role.index, init, logger, hooks);
    case "consumer":
      return startConsumer(init, logger, hooks);
    case "maintenance":
      return startMaintenance(init, logger, hooks);
    case "scheduler":
      return startSchedulerChild(init, logger, hooks);
  }
}

function rssMb(): number {
  return Math.round(process.memoryUsage.rss() / 1_048_576);
}

/**
 * maxMemoryMb is for leaks: a limit that a freshly started child already exceeds would
 * recycle every replacement at its first beat, forever. Such a limit is reported once, with
 * the figure to go by, and this child runs without it.
 */
function usableMemoryLimit(limitMb: number | undefined, logger: Logger): number | undefined {
  if (limitMb === undefined) return undefined;
  const atStart = rssMb();
  if (atStart < limitMb) return limitMb;
  logger.error(
    { maxMemoryMb: limitMb, rssMbAtStart: atStart },
    `maxMemoryMb ${limitMb} is below this worker's resident memory right after start (${atStart} MB); ` +
      `memory recycling is off for this process: set maxMemoryMb well above ${atStart}`,
  );
  return undefined;
}

/** With "*", a worker leaves alone the queues other worker entries name. */
export function excludedQueuesFor(config: Pick<ResolvedConfig, "workers">, index: number): string[] {
  const entry = config.workers[index];
  if (!entry?.queues.includes(WILDCARD)) return [];
  const others = config.workers.filter((_, i) => i !== index).flatMap((worker) => worker.queues);
  return [...new Set(others.filter((queue) => queue !== WILDCARD))];
}

/** What a worker or consumer child runs: both claim, run jobs in a pool and ack. */
interface JobProcessor {
  readonly queues: readonly string[];
  start(): Promise<void>;
  stop(): Promise<void>;
  stats(): WorkerStats | null;
}

function requireJobsModule(config: ResolvedConfig): string {
  if (config.jobsModule === undefined) {
    throw new ValidationError(
      "INVALID_CONFIG",
      "workers need jobsModule: the module exporting the job definitions (config jobsModule, PGBUS_JOBS_MODULE or --jobs-module)",
    );
  }
  return config.jobsModule;
}

async function startWorker(index: number, init: InitMessage, logger: Logger, hooks: ChildHooks): Promise<RunningChild> {
  const { config } = init;
  const entry = config.workers[index];
  if (!entry) throw new ValidationError("INVALID_CONFIG", `worker ${index} is not in the config (it has ${config.workers.length} workers)`);
  const jobsModule = requireJobsModule(config);
  return runJobProcessor("worker", entry.capacity, init, logger, hooks, (bus, processId) =>
    bus.worker({
      processId,
      queues: entry.queues,
      excludeQueues: excludedQueuesFor(config, index),
      capacity: entry.capacity,
      executionMode: entry.executionMode,
      jobsModule,
      visibilityTimeoutSec: entry.visibilityTimeoutSec,
      pollIntervalMs: entry.pollIntervalMs,
      ackMode: (queue) => ackModeFor(config, queue),
      fifo: (queue) => fifoFor(config.queues, queue),
      circuitBreaker: (queue) => circuitBreakerFor(config, queue),
      rateLimitFor: (queue) => config.queues[queue]?.rateLimit,
      shutdownTimeoutMs: config.shutdownTimeoutMs,
    }),
  );
}

/** Runs every event subscriber the jobs module exports, with the global execution mode. */
async function startConsumer(init: InitMessage, logger: Logger, hooks: ChildHooks): Promise<RunningChild> {
  const { config } = init;
  const jobsModule = requireJobsModule(config);
  return runJobProcessor("consumer", config.consumers.capacity, init, logger, hooks, (bus) =>
    bus.consumer({
      capacity: config.consumers.capacity,
      executionMode: config.executionMode,
      jobsModule,
      visibilityTimeoutSec: config.visibilityTimeoutSec,
      pollIntervalMs: config.pollIntervalMs,
      ackMode: (queue) => ackModeFor(config, queue),
      shutdownTimeoutMs: config.shutdownTimeoutMs,
    }),
  );
}

async function runJobProcessor(
  role: "worker" | "consumer",
  capacity: number,
  init: InitMessage,
  logger: Logger,
  hooks: ChildHooks,
  /** `processId`: the child's row in pgbus.processes (its heartbeat). */
  build: (bus: Pgbus, processId: string) => JobProcessor,
): Promise<RunningChild> {
  const { config } = init;
  const registry = await loadJobsModule(requireJobsModule(config));
  const bus = new Pgbus({
    connectionString: config.databaseUrl,
    directUrl: config.directUrl,
    preparedStatements: config.preparedStatements,
    jobs: registry.all(),
    logger,
    maxPayloadBytes: config.maxPayloadBytes,
    notifications: ipcNotifications(NOTIFY_CHANNEL),
    metrics: false, // counted here and sent with each beat: the supervisor writes them (host-services.ts)
  });
  const jobMetrics = new JobMetricsTally();
  countJobs(bus, jobMetrics);
  const processId = randomUUID();
  const processor = build(bus, processId);
  const stats = (): ChildStats => {
    const { processed, failed, retried, deadLettered, busy } = processor.stats() ?? {
      processed: 0,
      failed: 0,
      retried: 0,
      deadLettered: 0,
      busy: 0,
    };
    return { processed, failed, retried, deadLettered, busy, rssMb: rssMb() };
  };
  const memoryLimitMb = usableMemoryLimit(config.maxMemoryMb, logger);
  const recycleIfDue = (): void => {
    const now = stats();
    if (config.maxJobsPerWorker !== undefined && now.processed + now.failed >= config.maxJobsPerWorker) {
      hooks.recycle(`ran ${now.processed + now.failed} jobs (maxJobsPerWorker ${config.maxJobsPerWorker})`);
    } else if (memoryLimitMb !== undefined && now.rssMb > memoryLimitMb) {
      hooks.recycle(`resident memory ${now.rssMb} MB exceeds maxMemoryMb ${memoryLimitMb}`);
    }
  };
  const snapshot = (): ChildSnapshot => {
    const { busy, rssMb: rss, ...counts } = stats();
    return {
      processId,
      role,
      executionMode: processor.stats()?.executionMode ?? null,
      capacity,
      busy,
      queues: [...processor.queues],
      stats: { ...counts, rssMb: rss },
      jobMetrics: jobMetrics.drain(),
    };
  };
  const beat = new ChildBeat(config.heartbeatIntervalMs, () => {
    hooks.send({ type: "stats", stats: stats(), snapshot: snapshot() });
    recycleIfDue();
  });
  // The job count is checked after every run, not only per beat, so the limit is exact.
  // Only then: a listener makes the worker build an event for every run, a per-job cost
  // a worker without the limit need not pay (memory is checked on each beat).
  if (config.maxJobsPerWorker !== undefined) {
    bus.on("job:success", recycleIfDue);
    bus.on("job:failure", recycleIfDue);
  }
  // A library is silent; the CLI's log is where an operator looks for failing jobs.
  bus.on("job:failure", ({ job, queue, messageId, attempt, error, retryInMs }) =>
    logger.warn(
      { job, queue, messageId, attempt, err: error.message, retryInMs },
      retryInMs === null ? "job failed" : "job failed; retrying",
    ),
  );
  bus.on("job:dead", ({ job, queue, messageId, reason, error }) =>
    logger.error({ job, queue, messageId, reason, err: error.message }, "job moved to the dead-letter queue"),
  );
  const close = async (): Promise<void> => {
    await bus.close().catch(() => {});
  };
  try {
    await processor.start();
  } catch (error) {
    await close();
    throw error;
  }
  beat.start();
  const started = processor.stats();
  let stopping: Promise<void> | null = null;
  return {
    ready: {
      type: "ready",
      processId,
      pid: process.pid,
      executionMode: started?.executionMode ?? null,
      capacity,
      queues: [...processor.queues],
    },
    stop() {
      stopping ??= (async () => {
        await processor.stop(); // keeps beating meanwhile, so a long drain does not look dead
        beat.stop();
        beat.beatNow(); // a last one, with the jobs counted since the previous
        await close();
      })();
      return stopping;
    },
  };
}

async function startMaintenance(init: InitMessage, logger: Logger, hooks: ChildHooks): Promise<RunningChild> {
  const { config } = init;
  const processId = randomUUID();
  const stats = (): ChildStats => ({
    processed: 0,
    failed: 0,
    retried: 0,
    deadLettered: 0,
    busy: 0,
    rssMb: rssMb(),
    maintenanceActive: maintenance.active,
  });
  const sendBeat = (): void =>
    hooks.send({
      type: "stats",
      stats: stats(),
      snapshot: {
        processId,
        role: "maintenance",
        executionMode: null,
        capacity: null,
        busy: 0,
        queues: [],
        stats: { maintenanceActive: maintenance.active, rssMb: rssMb() },
      },
    });
  const beat = new ChildBeat(config.heartbeatIntervalMs, sendBeat);
  // One connection: the session that holds the maintenance lock runs the maintenance too.
  // The outbox poller runs in the supervisor, on its connection.
  const maintenance: Maintenance = new Maintenance({
    // A session-level advisory lock: straight to PostgreSQL when databaseUrl is a pooler.
    clientConfig: { connectionString: config.directUrl ?? config.databaseUrl },
    config: config.maintenance,
    staleProcessAfterMs: config.staleProcessAfterMs,
    logger,
    // Beat at once so `pgbus status` shows who is active without waiting an interval.
    onActiveChange: sendBeat,
  });
  await maintenance.start();
  beat.start();
  let stopping: Promise<void> | null = null;
  return {
    ready: { type: "ready", processId, pid: process.pid, executionMode: null, capacity: null, queues: [] },
    stop() {
      stopping ??= (async () => {
        await maintenance.stop();
        beat.stop();
      })();
      return stopping;
    },
  };
}
