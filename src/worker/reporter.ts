import { toErrorRecord } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { SafeEmitter } from "../observability/emitter.ts";
import type { WorkerEvents } from "../observability/events.ts";

/**
 * How a worker tells what went wrong outside its jobs: errors go to the log and to
 * `worker:error`; an outage is reported once when it starts and once when it ends, never
 * per failed claim; a fenced-out outcome is logged as ownership lost.
 */
export class WorkerReporter {
  readonly #workerId: string;
  readonly #logger: Logger;
  readonly #emitter: SafeEmitter<WorkerEvents>;
  #databaseDown = false;

  constructor(workerId: string, logger: Logger, emitter: SafeEmitter<WorkerEvents>) {
    this.#workerId = workerId;
    this.#logger = logger;
    this.#emitter = emitter;
  }

  error(error: unknown, context: string): void {
    const record = toErrorRecord(error);
    this.#logger.error({ workerId: this.#workerId, err: record.message }, context);
    this.#emitter.emit("worker:error", { workerId: this.#workerId, error: record, context });
  }

  databaseDown(error: unknown): void {
    if (this.#databaseDown) return;
    this.#databaseDown = true;
    this.error(error, "claiming messages failed; retrying with backoff");
  }

  /** True when this ends an outage. */
  databaseBack(): boolean {
    if (!this.#databaseDown) return false;
    this.#databaseDown = false;
    this.#logger.info({ workerId: this.#workerId }, "database reachable again; claiming resumed");
    return true;
  }

  /** A fenced outcome matched nothing: it did nothing, and the other claim's run decides the message's fate. */
  ownershipLost(what: string): void {
    this.#logger.warn(
      { workerId: this.#workerId },
      `ownership lost: ${what} changed nothing; another worker claimed the message after this one's VT lapsed`,
    );
  }
}
