import { randomUUID } from "node:crypto";
import type pg from "pg";
import type { Cron } from "croner";
import { Pgbus } from "../bus.ts";
import type { RecurringConfig, ResolvedConfig } from "../config/schema.ts";
import { createPool } from "../db/queryable.ts";
import { ValidationError, toErrorRecord } from "../errors.ts";
import type { JobDefinition } from "../jobs/define.ts";
import { type RecurringDefinition, checkUniqueKeys, defineRecurring, dueTicks, parseCron } from "../jobs/recurring.ts";
import { JobRegistry, loadJobsModule } from "../jobs/registry.ts";
import type { Logger } from "../logger.ts";
import { ChildBeat } from "./child-beat.ts";
import type { ChildHooks, InitMessage, RunningChild } from "./child.ts";
import { claimTick, listTasks, pruneExecutions, recordTick, syncTask } from "./recurring-store.ts";

/**
 * The scheduler role: enqueues the ticks of recurring tasks. Every scheduler (one per
 * `pgbus start` that has recurring tasks) works on every tick; none holds a lock. What makes
 * each tick enqueue exactly once is the execution row (task key, tick time), inserted with
 * ON CONFLICT DO NOTHING in the transaction that enqueues the job (see recurring-store.ts),
 * so a second scheduler is a standby that costs one cheap statement per tick and takes over
 * with no delay when the first dies.
 */

/** A tick later than this counts as missed; missed ticks run only with the task's catchUp. */
export const ON_TIME_GRACE_MS = 5_000;
/** The scheduler looks at the database at least this often, to see enable/disable. */
const MAX_SLEEP_MS = 1_000;
const PRUNE_EVERY_MS = 3_600_000;
/** Execution rows are kept this long past the longest catch-up window. */
const EXECUTION_RETENTION_MARGIN_MS = 3_600_000;

export interface ScheduledTask {
  definition: RecurringDefinition;
  job: JobDefinition;
  schedule: Cron;
}

export interface SchedulerOptions {
  pool: pg.Pool;
  bus: Pgbus;
  tasks: readonly ScheduledTask[];
  logger: Logger;
  /** Ticks later than this are missed. Default ON_TIME_GRACE_MS. */
  graceMs?: number;
}

export interface SchedulerStats {
  enqueued: number;
  /** Ticks another scheduler took first. */
  skipped: number;
  errors: number;
}

/** Resolves each task's job (by definition or by name from the registry) and its schedule. */
export function resolveTasks(definitions: readonly RecurringDefinition[], registry: JobRegistry): ScheduledTask[] {
  checkUniqueKeys(definitions);
  return definitions.map((definition) => {
    const job = definition.jobDefinition ?? registry.get(definition.job);
    if (!job) {
      const known = registry.all().map((j) => j.name);
      throw new ValidationError(
        "UNKNOWN_JOB",
        `recurring task ${definition.key}: unknown job ${JSON.stringify(definition.job)}; valid: ${known.join(", ") || "(the jobs module exports none)"}`,
      );
    }
    return { definition, job, schedule: parseCron(definition.cron, definition.timezone, `recurring task ${definition.key}`) };
  });
}

/** The config file's entries as definitions. */
export function configuredTasks(recurring: readonly RecurringConfig[]): RecurringDefinition[] {
  return recurring.map((task) => defineRecurring(task));
}

/**
 * Whether `pgbus start` needs a scheduler: the config lists recurring tasks or the jobs
 * module exports some. A jobs module that does not load is left to the other children,
 * which report why.
 */
export async function hasRecurringTasks(config: Pick<ResolvedConfig, "recurring" | "jobsModule">): Promise<boolean> {
  if (config.recurring.length > 0) return true;
  if (config.jobsModule === undefined) return false;
  try {
    return (await loadJobsModule(config.jobsModule)).recurring.length > 0;
  } catch {
    return false;
  }
}

export class Scheduler {
  readonly #options: SchedulerOptions;
  readonly #graceMs: number;
  readonly stats: SchedulerStats = { enqueued: 0, skipped: 0, errors: 0 };
  #state: "idle" | "running" | "stopped" = "idle";
  #timer: NodeJS.Timeout | null = null;
  #wake: (() => void) | null = null;
  #loop: Promise<void> = Promise.resolve();
  #failing = false;
  readonly #failingTasks = new Set<string>();
  #prunedAt = 0;

  constructor(options: SchedulerOptions) {
    this.#options = options;
    this.#graceMs = options.graceMs ?? ON_TIME_GRACE_MS;
  }

  /** Writes the tasks' definitions (enabled flags stay as they are), then runs until stop(). */
  async start(): Promise<void> {
    if (this.#state !== "idle") return;
    const now = new Date();
    for (const task of this.#options.tasks) await syncTask(this.#options.pool, task.definition, task.schedule.nextRun(now));
    this.#state = "running";
    this.#options.logger.info(
      { tasks: this.#options.tasks.map((task) => `${task.definition.key} (${task.definition.cron})`) },
      "scheduler started",
    );
    this.#loop = this.#run();
  }

  /** Finishes the tick under way. Idempotent. */
  async stop(): Promise<void> {
    if (this.#state === "stopped") return this.#loop;
    const wasRunning = this.#state === "running";
    this.#state = "stopped";
    if (this.#timer) clearTimeout(this.#timer);
    this.#wake?.();
    await this.#loop;
    if (wasRunning) this.#options.logger.info({ ...this.stats }, "scheduler stopped");
  }

  async #run(): Promise<void> {
    while (this.#state === "running") {
      await this.tick();
      if (this.#state !== "running") return;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        this.#timer = setTimeout(resolve, this.#sleepMs());
      });
      this.#wake = null;
    }
  }

  /** Until just past the next tick of any task, at most MAX_SLEEP_MS. */
  #sleepMs(): number {
    const now = new Date();
    let sleep = MAX_SLEEP_MS;
    for (const task of this.#options.tasks) {
      const next = task.schedule.nextRun(now);
      if (next) sleep = Math.min(sleep, next.getTime() - now.getTime() + 5);
    }
    return Math.max(sleep, 5);
  }

  /** Enqueues every due tick of every enabled task; errors are logged, not thrown. */
  async tick(): Promise<void> {
    const { pool, tasks, logger } = this.#options;
    const now = new Date();
    try {
      const rows = new Map(
        (
          await listTasks(
            pool,
            tasks.map((task) => task.definition.key),
          )
        ).map((row) => [row.key, row]),
      );
      for (const task of tasks) {
        const row = rows.get(task.definition.key);
        if (!row?.enabled) continue;
        const { catchUp } = task.definition;
        const window = catchUp ? catchUp.withinMs : this.#graceMs;
        const after = Math.max(row.lastRunAt?.getTime() ?? -Infinity, row.since.getTime() - 1, now.getTime() - window);
        const ticks = dueTicks(task.schedule, new Date(after), now, catchUp ? catchUp.maxRuns : Math.ceil(this.#graceMs / 1000) + 1);
        try {
          for (const runAt of ticks) await this.#enqueueTick(task, runAt, now);
          if (this.#failingTasks.delete(task.definition.key)) logger.info({ task: task.definition.key }, "recurring task enqueues again");
        } catch (error) {
          // One task that cannot be enqueued (a payload its job's schema refuses, a queue
          // dropped meanwhile) must not hold up the others.
          this.stats.errors++;
          if (!this.#failingTasks.has(task.definition.key)) {
            this.#failingTasks.add(task.definition.key);
            logger.error(
              { task: task.definition.key, job: task.job.name, err: toErrorRecord(error).message },
              "recurring task could not be enqueued; retrying each tick (logged again once it works)",
            );
          }
        }
      }
      if (now.getTime() - this.#prunedAt > PRUNE_EVERY_MS) {
        this.#prunedAt = now.getTime();
        const longest = Math.max(this.#graceMs, ...tasks.map((task) => task.definition.catchUp?.withinMs ?? 0));
        await pruneExecutions(
          pool,
          tasks.map((task) => task.definition.key),
          longest + EXECUTION_RETENTION_MARGIN_MS,
        );
      }
      if (this.#failing) {
        this.#failing = false;
        logger.info({}, "scheduler reaches the database again");
      }
    } catch (error) {
      this.stats.errors++;
      if (!this.#failing) {
        this.#failing = true;
        logger.error({ err: toErrorRecord(error).message }, "scheduler tick failed; retrying (logged again once it works)");
      }
    }
  }

  async #enqueueTick(task: ScheduledTask, runAt: Date, now: Date): Promise<void> {
    const { pool, bus, logger } = this.#options;
    const { key } = task.definition;
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      if (!(await claimTick(client, key, runAt))) {
        await client.query("ROLLBACK");
        this.stats.skipped++;
        return;
      }
      const msgId = await bus.enqueue(task.job, task.definition.payload, {
        client,
        headers: { pgbus_recurring_key: key, pgbus_recurring_run_at: runAt.toISOString() },
      });
      await recordTick(client, key, runAt, task.job.queue, msgId, task.schedule.nextRun(now));
      await client.query("COMMIT");
      this.stats.enqueued++;
      logger.debug({ task: key, runAt: runAt.toISOString(), job: task.job.name, messageId: msgId }, "recurring task enqueued");
    } catch (error) {
      await client.query("ROLLBACK").catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  }
}

function rssMb(): number {
  return Math.round(process.memoryUsage.rss() / 1_048_576);
}

/** The scheduler child of `pgbus start`: the jobs module's recurring tasks and the config's, on one connection. */
export async function startSchedulerChild(init: InitMessage, logger: Logger, hooks: ChildHooks): Promise<RunningChild> {
  const { config } = init;
  const registry = config.jobsModule === undefined ? null : await loadJobsModule(config.jobsModule);
  const definitions = [...(registry?.recurring ?? []), ...configuredTasks(config.recurring)];
  const tasks = resolveTasks(definitions, registry ?? new JobRegistry());
  // One connection: the ticks are taken one transaction at a time.
  const pool = createPool(
    { connectionString: config.databaseUrl },
    {
      max: 1,
      applicationName: "pgbus:scheduler",
      queryTimeoutMs: 30_000,
      preparedStatements: config.preparedStatements,
    },
  );
  const bus = new Pgbus({ pool, jobs: tasks.map((task) => task.job), logger, maxPayloadBytes: config.maxPayloadBytes });
  const scheduler = new Scheduler({ pool, bus, tasks, logger });
  const processId = randomUUID();
  const beat = new ChildBeat(config.heartbeatIntervalMs, () =>
    hooks.send({
      type: "stats",
      stats: { processed: scheduler.stats.enqueued, failed: scheduler.stats.errors, retried: 0, deadLettered: 0, busy: 0, rssMb: rssMb() },
      snapshot: {
        processId,
        role: "scheduler",
        executionMode: null,
        capacity: null,
        busy: 0,
        queues: [...new Set(tasks.map((task) => task.job.queue))],
        stats: { ...scheduler.stats, tasks: tasks.length, rssMb: rssMb() },
      },
    }),
  );
  try {
    await scheduler.start();
  } catch (error) {
    await bus.close().catch(() => {});
    await pool.end().catch(() => {});
    throw error;
  }
  beat.start();
  let stopping: Promise<void> | null = null;
  return {
    ready: { type: "ready", processId, pid: process.pid, executionMode: null, capacity: null, queues: [] },
    stop() {
      stopping ??= (async () => {
        await scheduler.stop();
        beat.stop();
        await bus.close().catch(() => {});
        await pool.end().catch(() => {});
      })();
      return stopping;
    },
  };
}
