import type { Logger } from "../logger.ts";
import type { SafeEmitter } from "../observability/emitter.ts";
import type { WorkerEvents } from "../observability/events.ts";
import type { AckMode } from "./options.ts";
import type { Claim, WorkerStore } from "./worker-store.ts";

export interface BreakerEventsDependencies {
  store: WorkerStore;
  modeFor: (queue: string) => AckMode;
  emitter: SafeEmitter<WorkerEvents>;
  logger: Logger;
  workerId: string;
}

/**
 * The worker's side of the circuit breaker (queue/breaker.ts). The breaker's state changes
 * in PostgreSQL, in the statements that record failures, claim and ack; this reports each
 * change once, from the worker whose statement made it, as a `queue:breaker` event and a
 * log line. It also acks a probe on its own, not in the ack batch, so that its success
 * closes the breaker (and is reported) at once.
 */
export class BreakerEvents {
  readonly #deps: BreakerEventsDependencies;

  constructor(deps: BreakerEventsDependencies) {
    this.#deps = deps;
  }

  /** After a failed run was recorded: reports the breaker's opening if that failure opened it. */
  async afterFailure(queue: string, claim: Claim, probe: boolean): Promise<void> {
    const opened = await this.#deps.store.breakerOpenedBy(queue, claim);
    if (!opened) return;
    const reason = probe ? "probe_failed" : "failures";
    this.#deps.logger.warn(
      { workerId: this.#deps.workerId, queue, reason, ...opened },
      `circuit breaker of queue ${queue} opened (${probe ? "the probe failed" : `${opened.consecutiveFailures} consecutive failures`}): no job of it starts for ${opened.backoffMs} ms, then one probe`,
    );
    this.#deps.emitter.emit("queue:breaker", { queue, state: "open", reason, ...opened });
  }

  probeStarted(queue: string, messageId: string): void {
    this.#deps.logger.info(
      { workerId: this.#deps.workerId, queue, messageId },
      `circuit breaker of queue ${queue} half-open: probe job started`,
    );
    this.#deps.emitter.emit("queue:breaker", { queue, state: "half_open", reason: "probe_started" });
  }

  /** Acks the probe (counting it in its batch if it has one), which closes the breaker. */
  async probeSucceeded(queue: string, claim: Claim, inBatch: boolean): Promise<boolean> {
    const mode = this.#deps.modeFor(queue);
    const acked = await (inBatch ? this.#deps.store.ackBatchJobs(queue, [claim], mode) : this.#deps.store.ack(queue, [claim], mode));
    if (acked === 0) return false;
    this.#deps.logger.info({ workerId: this.#deps.workerId, queue }, `circuit breaker of queue ${queue} closed: the probe succeeded`);
    this.#deps.emitter.emit("queue:breaker", { queue, state: "closed", reason: "probe_succeeded" });
    return true;
  }
}
