import type pg from "pg";
import { ValidationError, toErrorRecord } from "../errors.ts";
import { Listener } from "../db/listener.ts";
import { clientConfigOf, runStatement } from "../db/queryable.ts";
import { type Logger, silentLogger } from "../logger.ts";
import { DEFER_OUTBOX_ROW, MOVE_OUTBOX, OUTBOX_CANDIDATES } from "./sql.ts";
import type { NotificationHandlers, NotificationSource } from "../worker/notifications.ts";
import { Wakeup } from "../worker/wakeup.ts";

export const OUTBOX_CHANNEL = "pgbus_outbox";

export interface OutboxPollerOptions {
  /** Where the outbox and the queues live. The poller never ends it. */
  pool: pg.Pool;
  /** Default: silent. */
  logger?: Logger;
  /** Rows moved per statement. Default 500. */
  batchSize?: number;
  /** Backstop poll when no notification arrives. Default 1000 ms. */
  pollIntervalMs?: number;
  /** For the LISTEN connection. Default: the pool's own settings. */
  clientConfig?: pg.ClientConfig;
  /** Replaces the poller's own LISTEN connection (under `pgbus start`: the supervisor's, shared). */
  notifications?: (handlers: NotificationHandlers) => NotificationSource;
}

export interface OutboxBatch {
  /** Outbox rows deleted (and sent). */
  moved: number;
  /** Queue messages written for job rows. */
  jobs: number;
  /** Queue messages written for event rows (one per matching subscriber queue). */
  eventCopies: number;
}

export interface OutboxPollerStats {
  moved: number;
  batches: number;
  /** Rows set aside for a retry because moving them failed. */
  deferred: number;
}

type State = "idle" | "running" | "stopping" | "stopped";

/**
 * Moves committed outbox rows to their queues, a batch per statement (delete + send in one
 * statement, rows picked FOR UPDATE SKIP LOCKED): each row is sent exactly once however
 * many pollers run, and a crash mid-batch rolls the whole batch back. Wakes on the
 * `pgbus_outbox` notification that a committing insert sends, polls as a backstop, and
 * goes again at once while batches come back full.
 *
 * A batch that fails (say a job's queue was dropped) is retried row by row; a row that
 * still fails is set aside with backoff (attempts, last_error) so it cannot block the rows
 * behind it.
 */
export class OutboxPoller {
  readonly #pool: pg.Pool;
  readonly #logger: Logger;
  readonly #batchSize: number;
  readonly #pollIntervalMs: number;
  readonly #clientConfig: pg.ClientConfig;
  readonly #stats: OutboxPollerStats = { moved: 0, batches: 0, deferred: 0 };
  #state: State = "idle";
  #listener: NotificationSource | null = null;
  readonly #notifications: ((handlers: NotificationHandlers) => NotificationSource) | undefined;
  #loopDone: Promise<void> = Promise.resolve();
  #stopPromise: Promise<void> | null = null;
  readonly #wakeup = new Wakeup();
  #failing = false;

  constructor(options: OutboxPollerOptions) {
    if (!options?.pool || typeof options.pool.query !== "function")
      throw new ValidationError("INVALID_OPTION", "OutboxPoller needs pool (a pg.Pool)");
    const batchSize = options.batchSize ?? 500;
    const pollIntervalMs = options.pollIntervalMs ?? 1000;
    if (!Number.isInteger(batchSize) || batchSize < 1)
      throw new ValidationError("INVALID_OPTION", `batchSize must be an integer >= 1, got ${String(batchSize)}`);
    if (!Number.isFinite(pollIntervalMs) || pollIntervalMs < 1)
      throw new ValidationError("INVALID_OPTION", `pollIntervalMs must be a number >= 1, got ${String(pollIntervalMs)}`);
    this.#pool = options.pool;
    this.#logger = options.logger ?? silentLogger;
    this.#batchSize = batchSize;
    this.#pollIntervalMs = pollIntervalMs;
    this.#clientConfig = options.clientConfig ?? clientConfigOf(options.pool);
    this.#notifications = options.notifications;
  }

  stats(): OutboxPollerStats {
    return { ...this.#stats };
  }

  /** Listens, then moves what is already waiting; resolves once the loop runs. */
  async start(): Promise<void> {
    if (this.#state !== "idle") return;
    this.#state = "running";
    const handlers: NotificationHandlers = { onNotification: () => this.#wake(), onConnected: () => this.#wake() };
    this.#listener =
      this.#notifications?.(handlers) ??
      new Listener({
        clientConfig: this.#clientConfig,
        channel: OUTBOX_CHANNEL,
        logger: this.#logger,
        applicationName: "pgbus:outbox:listen",
        ...handlers,
      });
    await this.#listener.start();
    this.#loopDone = this.#loop();
  }

  /** Finishes the batch under way, then stops. Idempotent; safe before start. */
  stop(): Promise<void> {
    this.#stopPromise ??= this.#stop();
    return this.#stopPromise;
  }

  /** Moves one batch now, in one statement. */
  async moveBatch(ids: string[] | null = null): Promise<OutboxBatch> {
    const limit = ids ? ids.length : this.#batchSize;
    const rows = await runStatement<{ moved: number; jobs: number; event_copies: number }>(this.#pool, true, MOVE_OUTBOX, [limit, ids]);
    const row = rows[0]!;
    const batch = { moved: row.moved, jobs: row.jobs, eventCopies: row.event_copies };
    if (batch.moved > 0) {
      this.#stats.moved += batch.moved;
      this.#stats.batches++;
    }
    return batch;
  }

  async #stop(): Promise<void> {
    if (this.#state === "idle") {
      this.#state = "stopped";
      return;
    }
    this.#state = "stopping";
    this.#wake();
    await this.#loopDone;
    await this.#listener?.stop();
    this.#state = "stopped";
  }

  async #loop(): Promise<void> {
    while (this.#state === "running") {
      let full = false;
      try {
        full = (await this.#moveOrRecover()) === this.#batchSize;
        if (this.#failing) {
          this.#failing = false;
          this.#logger.info({}, "outbox poller: database reachable again");
        }
      } catch (error) {
        if (!this.#failing) this.#logger.error({ err: toErrorRecord(error).message }, "outbox poller: cannot reach the outbox; retrying");
        this.#failing = true;
        await this.#sleep(Math.min(5_000, this.#pollIntervalMs * 2));
        continue;
      }
      if (!full) await this.#sleep(this.#pollIntervalMs);
    }
  }

  /** One batch; if it fails, the same rows one at a time, setting aside those that fail alone. */
  async #moveOrRecover(): Promise<number> {
    try {
      return (await this.moveBatch()).moved;
    } catch (batchError) {
      const candidates = await this.#pool.query<{ id: string }>(OUTBOX_CANDIDATES, [this.#batchSize]);
      if (candidates.rows.length === 0) throw batchError;
      let moved = 0;
      for (const { id } of candidates.rows) {
        if (this.#state !== "running") break;
        try {
          moved += (await this.moveBatch([id])).moved;
        } catch (rowError) {
          const message = toErrorRecord(rowError).message;
          await this.#pool.query(DEFER_OUTBOX_ROW, [id, message]);
          this.#stats.deferred++;
          this.#logger.error({ outboxId: id, err: message }, "outbox poller: cannot move this row; retrying it later with backoff");
        }
      }
      return moved;
    }
  }

  #wake(): void {
    this.#wakeup.wake();
  }

  async #sleep(ms: number): Promise<void> {
    if (this.#state === "running") await this.#wakeup.sleep(ms);
  }
}
