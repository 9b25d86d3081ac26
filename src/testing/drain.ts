import type { Pgbus } from "../bus.ts";
import type { ErrorRecord } from "../errors.ts";
import { ValidationError } from "../errors.ts";
import type { JobRef } from "../observability/events.ts";
import { isSubscriberDefinition } from "../events/subscriber.ts";
import type { DeadLetterReason } from "../queue/dead-letter.ts";
import { fakeNow, modeOf, testState } from "./modes.ts";
import { InlineJobError, type InlineRun, notFake, runJobInline } from "./run.ts";

/** What a drain ran: every run that succeeded, every run that failed, every message dead-lettered. */
export interface DrainResult {
  ran: JobRef[];
  /** Failed runs; `retryInMs` is when the retry is due (null: no retry, see deadLettered). */
  failed: Array<JobRef & { error: ErrorRecord; retryInMs: number | null }>;
  deadLettered: Array<JobRef & { error: ErrorRecord; reason: DeadLetterReason }>;
  /** Messages left in the drained queues afterwards (not due yet: delayed, or waiting to be retried). */
  pending: number;
}

export interface DrainOptions {
  /** Default: every queue of the bus's jobs and subscribers. */
  queues?: string[];
  /** Jobs run at once. Default 10. */
  capacity?: number;
  /** Give up (and reject) after this long. Default 30000. */
  timeoutMs?: number;
}

const CHECK_EVERY_MS = 20;

/**
 * Runs everything queued and due in `queues` against the real database, with a real
 * worker of the bus, until nothing is due and nothing runs; then stops the worker and
 * reports what ran. Messages that become due later (a delayed job, a retry after its
 * backoff) stay queued and are counted in `pending`: move time with advanceTime(db, ms)
 * and drain again.
 */
export async function drain(bus: Pgbus, options: DrainOptions = {}): Promise<DrainResult> {
  if (modeOf(bus) !== "real")
    throw new ValidationError(
      "INVALID_OPTION",
      `drain: the bus is in ${modeOf(bus)} mode; drain runs real queues (use runEnqueued in fake mode)`,
    );
  const queues = options.queues ?? bus.registry.queues();
  if (queues.length === 0) throw new ValidationError("INVALID_OPTION", "drain: no queues: register jobs on the bus or pass { queues }");
  const timeoutMs = options.timeoutMs ?? 30_000;
  const wanted = new Set(queues);
  const result: DrainResult = { ran: [], failed: [], deadLettered: [], pending: 0 };
  const unsubscribe = [
    bus.on("job:success", ({ durationMs: _d, ...ref }) => void (wanted.has(ref.queue) && result.ran.push(ref))),
    bus.on("job:failure", ({ durationMs: _d, ...failure }) => void (wanted.has(failure.queue) && result.failed.push(failure))),
    bus.on("job:dead", (dead) => void (wanted.has(dead.queue) && result.deadLettered.push(dead))),
  ];
  // Job queues get a worker; subscriber queues a consumer (which routes events to handlers).
  const subscribers = bus.registry
    .all()
    .filter(isSubscriberDefinition)
    .filter((s) => wanted.has(s.subscriber.queue));
  const subscriberQueues = new Set(subscribers.map((s) => s.subscriber.queue));
  const jobQueues = queues.filter((queue) => !subscriberQueues.has(queue));
  const capacity = options.capacity ?? 10;
  const runners: Array<{ start(): Promise<void>; stop(): Promise<void>; busy(): number }> = [];
  if (jobQueues.length > 0) {
    const worker = bus.worker({ queues: jobQueues, capacity, prefetch: 0, pollIntervalMs: 50 });
    runners.push({ start: () => worker.start(), stop: () => worker.stop(), busy: () => worker.stats().busy });
  }
  if (subscribers.length > 0) {
    const consumer = bus.consumer({ subscribers, capacity, prefetch: 0, pollIntervalMs: 50 });
    runners.push({ start: () => consumer.start(), stop: () => consumer.stop(), busy: () => consumer.stats()?.busy ?? 0 });
  }
  const deadline = Date.now() + timeoutMs;
  try {
    for (const runner of runners) await runner.start();
    let quietChecks = 0;
    // Done when, three checks in a row, nothing runs and nothing in the queues is due.
    while (quietChecks < 3) {
      if (Date.now() > deadline) {
        throw new Error(
          `drain: still running after ${timeoutMs} ms (ran ${result.ran.length}, failed ${result.failed.length}); is a job stuck?`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, CHECK_EVERY_MS));
      const idle = runners.every((runner) => runner.busy() === 0);
      const visible = idle ? await visibleMessages(bus, queues) : 1;
      quietChecks = idle && visible === 0 ? quietChecks + 1 : 0;
    }
  } finally {
    await Promise.all(runners.map((runner) => runner.stop()));
    for (const off of unsubscribe) off();
  }
  for (const queue of queues) result.pending += (await bus.queues.metrics(queue)).queueLength;
  return result;
}

async function visibleMessages(bus: Pgbus, queues: string[]): Promise<number> {
  let total = 0;
  for (const queue of queues) total += (await bus.queues.metrics(queue)).visibleLength;
  return total;
}

/**
 * Fake mode's drain: runs the recorded jobs that are due on the fake clock, oldest first,
 * in this process (as inline mode runs them), and removes them from the record; jobs they
 * enqueue are recorded and run too when due. Failures are reported, not thrown.
 */
export async function runEnqueued(bus: Pgbus, options: { job?: string; queues?: string[] } = {}): Promise<DrainResult> {
  const state = testState(bus);
  if (!state || state.mode !== "fake") throw notFake("runEnqueued");
  const result: DrainResult = { ran: [], failed: [], deadLettered: [], pending: 0 };
  const selected = (record: (typeof state.enqueued)[number]) =>
    (options.job === undefined || record.job === options.job) && (options.queues === undefined || options.queues.includes(record.queue));
  for (;;) {
    const index = state.enqueued.findIndex((record) => selected(record) && record.runAt <= fakeNow(state));
    if (index === -1) break;
    const [record] = state.enqueued.splice(index, 1);
    const job = bus.registry.get(record!.job)!;
    let runs: InlineRun[];
    let dead: InlineJobError["deadLetterReason"];
    try {
      runs = await runJobInline(job, record!.payload, { retries: state.retries, messageId: record!.id });
    } catch (error) {
      if (!(error instanceof InlineJobError)) throw error;
      runs = error.runs;
      dead = error.deadLetterReason;
    }
    state.runs.push(...runs);
    for (const run of runs) {
      const ref: JobRef = { queue: run.queue, messageId: run.messageId, job: run.job, attempt: run.attempt };
      if (run.ok) result.ran.push(ref);
      else result.failed.push({ ...ref, error: run.error!, retryInMs: null });
    }
    const last = runs[runs.length - 1]!;
    if (dead !== undefined)
      result.deadLettered.push({
        queue: last.queue,
        messageId: last.messageId,
        job: last.job,
        attempt: last.attempt,
        error: last.error!,
        reason: dead,
      });
  }
  result.pending = state.enqueued.filter(selected).length;
  return result;
}
