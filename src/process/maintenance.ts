import pg from "pg";
import type { MaintenanceConfig } from "../config/schema.ts";
import { toErrorRecord } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { runPartitionMaintenance } from "../queue/admin.ts";
import { QueueClient } from "../queue/client.ts";
import {
  pruneArchive,
  pruneFailedJobs,
  pruneFinishedBatches,
  pruneProcessedEvents,
  reapStaleProcesses,
  sweepLimits,
} from "./process-store.ts";
import { ADVISORY_LOCK } from "../db/advisory-locks.ts";
import { endClient } from "../db/close.ts";
import { isUndefinedTable } from "../db/pg-errors.ts";
import { CONNECTION_DEFAULTS } from "../db/queryable.ts";
import { ADVISORY_UNLOCK, TRY_ADVISORY_LOCK } from "./sql.ts";

/** Longest a maintenance statement may take; each prunes one bounded batch. */
const MAINTENANCE_STATEMENT_TIMEOUT_MS = 60_000;

export interface MaintenanceOptions {
  /** For the dedicated connection that holds the lock. */
  clientConfig: pg.ClientConfig;
  config: MaintenanceConfig;
  /** Processes without a heartbeat for this long are deleted from pgbus.processes. */
  staleProcessAfterMs: number;
  logger: Logger;
  /** Called when this maintenance gains or loses the lock, e.g. to beat at once. */
  onActiveChange?: (active: boolean) => void;
}

/** What one maintenance pass removed. */
export interface MaintenanceReport {
  archivedMessages: number;
  staleProcesses: number;
  failedJobs: number;
  processedEvents: number;
  finishedBatches: number;
  /** Waiters of concurrency limits woken because their key had free slots (their holder died, or a hand-off was lost). */
  limitWaitersWoken: number;
}

/**
 * The maintenance role. Every `intervalMs` it prunes archives, runs pg_partman's
 * maintenance on partitioned queues (when pg_partman is installed), prunes failed-job records and
 * processed-event records past their retention, reaps processes whose heartbeat went
 * stale and sweeps flow limits (dead concurrency slots, their waiters, old rate windows),
 * but only while it holds a session-level advisory lock on its own connection: so
 * across hosts exactly one maintenance works and the others stand by, retrying the lock
 * each interval. Losing the connection loses the lock (PostgreSQL releases session locks
 * when the session ends), so a maintenance whose connection drops goes back to standby and
 * must win the lock again.
 */
export class Maintenance {
  readonly #options: MaintenanceOptions;
  #client: pg.Client | null = null;
  #active = false;
  #state: "idle" | "running" | "stopped" = "idle";
  #timer: NodeJS.Timeout | null = null;
  #ticking: Promise<unknown> = Promise.resolve();
  #stopPromise: Promise<void> | null = null;
  #connectionFailing = false;
  /** Set when this maintenance's own connection failed; see #reapNotBefore. */
  #cutOff = false;
  /**
   * After an outage of its own the maintenance does not reap until this time (one stale
   * period after reconnecting): every process's heartbeat failed during the outage too,
   * and live ones must get a chance to beat again before any is declared dead.
   */
  #reapNotBefore = 0;

  constructor(options: MaintenanceOptions) {
    this.#options = options;
  }

  /** True while this maintenance holds the lock (and so is the one doing maintenance). */
  get active(): boolean {
    return this.#active;
  }

  /** Runs the first pass (errors logged, not thrown), then one per interval. */
  async start(): Promise<void> {
    if (this.#state !== "idle") return;
    this.#state = "running";
    await this.tick();
    this.#schedule();
  }

  /** Releases the lock and closes the connection. Idempotent. */
  stop(): Promise<void> {
    this.#stopPromise ??= this.#stop();
    return this.#stopPromise;
  }

  /** One pass now: take the lock if free, then maintain. Null when standing by or unable to connect. */
  tick(): Promise<MaintenanceReport | null> {
    const next = this.#ticking.then(() => this.#tick());
    this.#ticking = next.catch(() => {});
    return next;
  }

  async #stop(): Promise<void> {
    this.#state = "stopped";
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#ticking;
    const client = this.#client;
    this.#client = null;
    if (client) {
      if (this.#active) await client.query(ADVISORY_UNLOCK, [ADVISORY_LOCK.maintenance]).catch(() => {});
      await endClient(client);
    }
    this.#setActive(false);
  }

  #schedule(): void {
    if (this.#state !== "running") return;
    this.#timer = setTimeout(() => {
      void this.tick().finally(() => this.#schedule());
    }, this.#options.config.intervalMs);
  }

  async #tick(): Promise<MaintenanceReport | null> {
    if (this.#state !== "running") return null;
    const client = await this.#connect();
    if (!client) return null;
    if (!this.#active) {
      try {
        const result = await client.query<{ locked: boolean }>(TRY_ADVISORY_LOCK, [ADVISORY_LOCK.maintenance]);
        if (!result.rows[0]?.locked) return null; // another maintenance is active
      } catch (error) {
        this.#dropConnection(client, error);
        return null;
      }
      this.#options.logger.info({}, "maintenance active: holds the maintenance lock");
      this.#setActive(true);
    }
    return this.#maintain(client);
  }

  async #maintain(client: pg.Client): Promise<MaintenanceReport> {
    const { config, staleProcessAfterMs, logger } = this.#options;
    const report: MaintenanceReport = {
      archivedMessages: 0,
      staleProcesses: 0,
      failedJobs: 0,
      processedEvents: 0,
      finishedBatches: 0,
      limitWaitersWoken: 0,
    };
    // Each step on its own: one failing (a queue dropped mid-pass) must not skip the others.
    const step = async (name: string, work: () => Promise<void>): Promise<void> => {
      if (this.#client !== client) return; // connection lost mid-pass: the lock went with it
      try {
        await work();
      } catch (error) {
        logger.error({ step: name, err: toErrorRecord(error).message }, "maintenance step failed; retried next interval");
      }
    };
    await step("archive", async () => {
      for (const queue of await new QueueClient(client).listQueues()) {
        try {
          report.archivedMessages += await pruneArchive(client, queue.name, config.archiveRetentionHours);
        } catch (error) {
          // Dropped since it was listed: nothing left to prune there; the queues after it still are.
          if (!isUndefinedTable(error)) throw error;
        }
      }
    });
    await step("partitions", async () => {
      await runPartitionMaintenance(client); // pg_partman: new partitions ahead, old ones dropped
    });
    await step("processes", async () => {
      if (Date.now() < this.#reapNotBefore) return;
      const reaped = await reapStaleProcesses(client, staleProcessAfterMs);
      report.staleProcesses = reaped.length;
      for (const { id, role, host, pid } of reaped)
        logger.warn(
          { processId: id, processRole: role, host, processPid: pid },
          "reaped a process whose heartbeat went stale; its jobs return after their VT",
        );
    });
    await step("limits", async () => {
      report.limitWaitersWoken = await sweepLimits(client);
    });
    await step("failed_jobs", async () => {
      report.failedJobs = await pruneFailedJobs(client, config.failedJobRetentionHours);
    });
    await step("batches", async () => {
      report.finishedBatches = await pruneFinishedBatches(client, config.archiveRetentionHours);
    });
    await step("processed_events", async () => {
      report.processedEvents = await pruneProcessedEvents(client, config.processedEventTtlHours);
    });
    if (Object.values(report).some((n) => n > 0)) logger.info({ ...report }, "maintenance pass");
    return report;
  }

  async #connect(): Promise<pg.Client | null> {
    if (this.#client) return this.#client;
    // Bounded statements: a connection gone silent fails a pass (and is replaced) instead of
    // holding the maintenance lock forever without doing maintenance.
    const client = new pg.Client({
      ...CONNECTION_DEFAULTS,
      ...this.#options.clientConfig,
      query_timeout: MAINTENANCE_STATEMENT_TIMEOUT_MS,
      application_name: "pgbus:maintenance",
    });
    // Without listeners a dropped connection would be an unhandled 'error' event: a crash.
    client.on("error", (error) => this.#dropConnection(client, error));
    client.on("end", () => this.#dropConnection(client, new Error("connection ended")));
    try {
      await client.connect();
    } catch (error) {
      this.#connectionFailed(error);
      await client.end().catch(() => {});
      return null;
    }
    if (this.#state !== "running") {
      await client.end().catch(() => {});
      return null;
    }
    if (this.#connectionFailing) {
      this.#connectionFailing = false;
      this.#options.logger.info({}, "maintenance reconnected");
    }
    if (this.#cutOff) {
      this.#cutOff = false;
      this.#reapNotBefore = Date.now() + this.#options.staleProcessAfterMs;
    }
    this.#client = client;
    return client;
  }

  #dropConnection(client: pg.Client, error: unknown): void {
    if (this.#client !== client) return;
    this.#client = null;
    client.end().catch(() => {});
    if (this.#state !== "running") return;
    this.#cutOff = true;
    if (this.#active)
      this.#options.logger.warn(
        { err: toErrorRecord(error).message },
        "maintenance lost its connection and with it the maintenance lock; it will try to win it again",
      );
    this.#setActive(false);
  }

  #connectionFailed(error: unknown): void {
    this.#cutOff = true;
    if (this.#connectionFailing) return;
    this.#connectionFailing = true;
    this.#options.logger.error(
      { err: toErrorRecord(error).message },
      "maintenance cannot connect; retrying every interval (logged again once it works)",
    );
  }

  #setActive(active: boolean): void {
    if (this.#active === active) return;
    this.#active = active;
    this.#options.onActiveChange?.(active);
  }
}
