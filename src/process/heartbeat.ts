import { hostname } from "node:os";
import type { Queryable } from "../db/queryable.ts";
import { toErrorRecord } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { type ProcessBeat, deleteProcess, upsertProcess } from "./process-store.ts";

/** What changes between beats; read fresh on every beat. */
export type ProcessSnapshot = Pick<ProcessBeat, "executionMode" | "capacity" | "busy" | "queues" | "stats">;

export interface HeartbeatOptions {
  db: Queryable;
  /** The row's id: the process's own uuid. */
  id: string;
  /** The supervisor that forked this process; null for the supervisor itself. */
  supervisorId: string | null;
  role: string;
  intervalMs: number;
  logger: Logger;
  snapshot: () => ProcessSnapshot;
  /** Called after every beat, successful or not, e.g. to forward stats to the supervisor. */
  onBeat?: (snapshot: ProcessSnapshot) => void;
}

/**
 * Keeps this process's row in pgbus.processes fresh (upsert every intervalMs) and deletes
 * it on a clean stop. A failing beat (database down) is logged once when beats start
 * failing and once when they work again, never per attempt, and never throws: a process
 * must outlive a database restart. The upsert re-creates a row the maintenance reaped while
 * the database was unreachable.
 */
export class Heartbeat {
  readonly #options: HeartbeatOptions;
  #timer: NodeJS.Timeout | null = null;
  #beating: Promise<void> = Promise.resolve();
  #healthy = true;
  #state: "idle" | "running" | "stopped" = "idle";
  #stopPromise: Promise<void> | null = null;

  constructor(options: HeartbeatOptions) {
    this.#options = options;
  }

  /** Writes the first beat (errors are logged, not thrown) and schedules the rest. */
  async start(): Promise<void> {
    if (this.#state !== "idle") return;
    this.#state = "running";
    await this.beat();
    this.#schedule();
  }

  /** One beat now; safe to call at any time, e.g. right after a state change worth showing. */
  beat(): Promise<void> {
    if (this.#state !== "running") return this.#beating;
    this.#beating = this.#beating.then(() => this.#beatOnce());
    return this.#beating;
  }

  /** Stops beating and deletes the row (best effort). Idempotent. */
  stop(): Promise<void> {
    this.#stopPromise ??= this.#stop();
    return this.#stopPromise;
  }

  async #stop(): Promise<void> {
    const wasRunning = this.#state === "running";
    this.#state = "stopped";
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#beating;
    if (!wasRunning) return;
    await deleteProcess(this.#options.db, this.#options.id).catch((error: unknown) => {
      this.#options.logger.warn(
        { err: toErrorRecord(error).message },
        "could not delete this process's heartbeat row; the maintenance reaps it once stale",
      );
    });
  }

  #schedule(): void {
    if (this.#state !== "running") return;
    this.#timer = setTimeout(() => {
      void this.beat().then(() => this.#schedule());
    }, this.#options.intervalMs);
    // The heartbeat alone must not keep a process alive that has nothing else to do.
    this.#timer.unref();
  }

  async #beatOnce(): Promise<void> {
    const { db, id, supervisorId, role, logger } = this.#options;
    let snapshot: ProcessSnapshot;
    try {
      snapshot = this.#options.snapshot();
    } catch (error) {
      logger.error({ err: toErrorRecord(error).message }, "heartbeat snapshot failed");
      return;
    }
    try {
      await upsertProcess(db, { id, supervisorId, role, host: hostname(), pid: process.pid, ...snapshot });
      if (!this.#healthy) {
        this.#healthy = true;
        logger.info({ role }, "heartbeat restored");
      }
    } catch (error) {
      if (this.#healthy) {
        this.#healthy = false;
        logger.error({ role, err: toErrorRecord(error).message }, "heartbeat failed; retrying every interval (logged again once it works)");
      }
    }
    this.#options.onBeat?.(snapshot);
  }
}
