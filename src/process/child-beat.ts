/**
 * A child's heartbeat: every interval it sends its stats and snapshot to the supervisor,
 * which writes the child's row in pgbus.processes on its own connection. The first beat
 * goes out at start, so the row exists as soon as the child runs.
 */
export class ChildBeat {
  readonly #intervalMs: number;
  readonly #send: () => void;
  #timer: NodeJS.Timeout | null = null;

  constructor(intervalMs: number, send: () => void) {
    this.#intervalMs = intervalMs;
    this.#send = send;
  }

  start(): void {
    if (this.#timer) return;
    this.#send();
    this.#timer = setInterval(this.#send, this.#intervalMs);
    this.#timer.unref(); // the beat alone must not keep a child alive
  }

  /** One beat now, outside the schedule. */
  beatNow(): void {
    this.#send();
  }

  /** Idempotent. The supervisor deletes the row once the child exits. */
  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }
}
