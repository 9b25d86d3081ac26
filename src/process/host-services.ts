import { hostname } from "node:os";
import type pg from "pg";
import type { ResolvedConfig } from "../config/schema.ts";
import { Listener } from "../db/listener.ts";
import { toErrorRecord } from "../errors.ts";
import { OUTBOX_CHANNEL, OutboxPoller } from "../events/outbox-poller.ts";
import type { Logger } from "../logger.ts";
import { NOTIFY_CHANNEL, type NotificationHandlers, type NotificationSource } from "../worker/notifications.ts";
import type { ChildSnapshot, ParentMessage } from "./messages.ts";
import { deleteProcess, upsertProcess } from "./process-store.ts";
import { JobMetricsFlusher, JobMetricsTally } from "../observability/job-metrics.ts";

export interface HostServicesOptions {
  config: ResolvedConfig;
  /** The supervisor's pool (one connection): child rows and the outbox poller run on it. */
  pool: pg.Pool;
  supervisorId: string;
  logger: Logger;
  /** Run the outbox poller here (when this supervisor runs the maintenance role). */
  outbox: boolean;
  /** Sends a message to every live child. */
  broadcast: (message: ParentMessage) => void;
}

/**
 * What the supervisor does for all its children on its own two connections, so that a host
 * running N worker processes holds 2N + 3 connections whatever their capacity (each worker
 * child: its two claim/ack connections; the maintenance child: one; the supervisor: one
 * LISTEN and one pool):
 * - one LISTEN for the host, fanned out to the children over IPC (ipc-notifications.ts);
 *   a re-LISTEN after a reconnect wakes every child once, and a child keeps polling if
 *   the LISTEN is down;
 * - the children's rows in pgbus.processes, written from the beats they send over IPC
 *   (a hung child sends none, so its row goes stale and is reaped);
 * - the outbox poller, woken by the same LISTEN.
 */
export class HostServices {
  readonly #options: HostServicesOptions;
  readonly #listener: Listener;
  readonly #outbox: OutboxPoller | null;
  /** The children's job counts, added to pgbus.job_metrics once per heartbeat interval for the whole host. */
  readonly #jobMetrics = new JobMetricsTally();
  readonly #jobMetricsFlusher: JobMetricsFlusher;
  #outboxHandlers: NotificationHandlers | null = null;
  /** Child row writes failing (database down): reported once per outage. */
  #failing = false;

  constructor(options: HostServicesOptions) {
    this.#options = options;
    const { config, logger } = options;
    this.#outbox = options.outbox
      ? new OutboxPoller({
          pool: options.pool,
          logger,
          batchSize: config.outbox.batchSize,
          pollIntervalMs: config.outbox.pollIntervalMs,
          notifications: (handlers) => this.#outboxSource(handlers),
        })
      : null;
    this.#jobMetricsFlusher = new JobMetricsFlusher({
      db: options.pool,
      tally: this.#jobMetrics,
      logger,
      flushIntervalMs: config.heartbeatIntervalMs,
    });
    this.#listener = new Listener({
      // LISTEN needs a session of its own: straight to PostgreSQL when databaseUrl is a pooler.
      clientConfig: { connectionString: config.directUrl ?? config.databaseUrl },
      channel: options.outbox ? [NOTIFY_CHANNEL, OUTBOX_CHANNEL] : [NOTIFY_CHANNEL],
      logger,
      applicationName: "pgbus:supervisor:listen",
      onNotification: (payload, channel) => {
        if (channel === OUTBOX_CHANNEL) this.#outboxHandlers?.onNotification(payload);
        else options.broadcast({ type: "notify", channel, payload });
      },
      onConnected: () => {
        this.#outboxHandlers?.onConnected();
        options.broadcast({ type: "listening" });
      },
    });
  }

  async start(): Promise<void> {
    await this.#listener.start();
    await this.#outbox?.start();
    this.#jobMetricsFlusher.start();
  }

  async stop(): Promise<void> {
    await this.#jobMetricsFlusher.stop();
    await this.#outbox?.stop();
    await this.#listener.stop();
  }

  /** A child's beat: its row is written at once, on the supervisor's connection. */
  async childBeat(pid: number, snapshot: ChildSnapshot): Promise<void> {
    const { processId, role, jobMetrics, ...shown } = snapshot;
    if (jobMetrics) this.#jobMetrics.add(jobMetrics);
    try {
      await upsertProcess(this.#options.pool, {
        id: processId,
        supervisorId: this.#options.supervisorId,
        role,
        host: hostname(),
        pid,
        ...shown,
      });
      if (this.#failing) this.#options.logger.info({}, "children's heartbeat rows restored");
      this.#failing = false;
    } catch (error) {
      if (!this.#failing)
        this.#options.logger.error(
          { err: toErrorRecord(error).message },
          "writing the children's heartbeat rows failed; retrying with each beat (logged again once it works)",
        );
      this.#failing = true;
    }
  }

  /** A child exited: its row goes (best effort; the maintenance reaps it otherwise). */
  async childGone(processId: string): Promise<void> {
    await deleteProcess(this.#options.pool, processId).catch(() => {});
  }

  #outboxSource(handlers: NotificationHandlers): NotificationSource {
    return {
      start: async () => {
        this.#outboxHandlers = handlers;
      },
      stop: async () => {
        this.#outboxHandlers = null;
      },
    };
  }
}
