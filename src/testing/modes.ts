import type { BusPublishOptions, EnqueueOptions, Pgbus } from "../bus.ts";
import { ValidationError } from "../errors.ts";
import { type Event, newEvent, toEventMessage } from "../events/event.ts";
import type { PublishedEvent } from "../events/publish.ts";
import { topicMatches, validateRoutingKey } from "../events/routing.ts";
import { isSubscriberDefinition } from "../events/subscriber.ts";
import type { JobDefinition } from "../jobs/define.ts";
import type { Headers } from "../queue/client.ts";
import { serializeJson } from "../queue/payload.ts";
import { type InlineRun, inlineMessageId, runJobInline } from "./run.ts";

/**
 * Test modes for a Pgbus instance. They replace the instance's enqueue, enqueueMany and
 * publish (and nothing else) until real(bus) puts the originals back:
 * - fake: nothing reaches PostgreSQL; enqueues and publishes are recorded in memory for
 *   expectEnqueued / expectPublished, and can be run later with runEnqueued.
 * - inline: each job runs at once, in the caller's process, through the same execution
 *   pool, validation, context and error types as a worker's run; an event runs every
 *   subscriber of the bus whose pattern matches. A failure rejects the enqueue (or
 *   publish) with an InlineJobError.
 * Both validate like a real enqueue: the job name is registered, the payload must pass
 * the job's schema and be JSON (and is recorded as JSON gives it back, as a handler would
 * receive it), the routing key must be valid.
 */

/** One recorded enqueue (fake mode). */
export interface EnqueuedRecord<P = unknown> {
  /** A numeric string, like a PGMQ message id; what enqueue returned. */
  id: string;
  job: string;
  queue: string;
  /** The payload as a handler would receive it (after a JSON round trip). */
  payload: P;
  headers: Headers | undefined;
  /** When the fake clock said it was enqueued. */
  enqueuedAt: Date;
  /** When it becomes due on the fake clock (delayMs / runAt), else enqueuedAt. */
  runAt: Date;
  /** Enqueued with `{ client }`, i.e. inside the caller's transaction. */
  inTransaction: boolean;
}

/** One recorded publish (fake mode). */
export interface PublishedRecord<P = unknown> {
  eventId: string;
  routingKey: string;
  payload: P;
  headers: Headers | undefined;
  publishedAt: Date;
  /** Subscribers of the bus whose pattern matches: what a real publish would reach if migrated. */
  subscribers: string[];
  inTransaction: boolean;
}

export type TestMode = "fake" | "inline";

export interface InlineOptions {
  /** Run a failed job again (without waiting for its backoff) until its maxRetries are used up. Default false. */
  retries?: boolean;
}

interface TestState {
  mode: TestMode;
  retries: boolean;
  enqueued: EnqueuedRecord[];
  published: PublishedRecord[];
  /** Every inline run (inline mode and runEnqueued). */
  runs: InlineRun[];
  /** Fake clock offset from real time, moved by advanceTime(bus, ms). */
  offsetMs: number;
}

const states = new WeakMap<Pgbus, TestState>();
const PATCHED = ["enqueue", "enqueueMany", "publish"] as const;

export function testState(bus: Pgbus): TestState | undefined {
  return states.get(bus);
}

export function fakeNow(state: TestState): Date {
  return new Date(Date.now() + state.offsetMs);
}

/** Records enqueues and publishes in memory instead of writing them to PostgreSQL; starts a fresh record. */
export function fake(bus: Pgbus): Pgbus {
  install(bus, "fake", {});
  return bus;
}

/** Runs every enqueued job (and published event's subscribers) at once, in this process. */
export function inline(bus: Pgbus, options: InlineOptions = {}): Pgbus {
  install(bus, "inline", options);
  return bus;
}

/** Back to real enqueues and publishes; forgets what fake mode recorded. */
export function real(bus: Pgbus): Pgbus {
  for (const name of PATCHED) delete (bus as unknown as Record<string, unknown>)[name];
  states.delete(bus);
  return bus;
}

/** The bus's test mode, or "real". */
export function modeOf(bus: Pgbus): TestMode | "real" {
  return states.get(bus)?.mode ?? "real";
}

/** Forgets what fake mode recorded so far (the mode stays). */
export function clearRecorded(bus: Pgbus): void {
  const state = states.get(bus);
  if (!state) return;
  state.enqueued.length = 0;
  state.published.length = 0;
  state.runs.length = 0;
}

function install(bus: Pgbus, mode: TestMode, options: InlineOptions): void {
  // A fresh record and clock each time a mode is entered (e.g. in each test's beforeEach).
  const state: TestState = { mode, retries: options.retries ?? false, enqueued: [], published: [], runs: [], offsetMs: 0 };
  states.set(bus, state);
  const target = bus as unknown as Record<string, unknown>;
  target["enqueueMany"] = (job: JobDefinition, payloads: readonly unknown[], enqueueOptions: EnqueueOptions = {}) =>
    enqueueMany(bus, state, job, payloads, enqueueOptions);
  target["enqueue"] = async (job: JobDefinition, payload: unknown, enqueueOptions: EnqueueOptions = {}) =>
    (await enqueueMany(bus, state, job, [payload], enqueueOptions))[0]!;
  target["publish"] = (routingKey: string, payload: unknown, publishOptions: BusPublishOptions = {}) =>
    publish(bus, state, routingKey, payload, publishOptions);
}

/** What a real enqueue checks before it writes: a known job name, the schema, JSON, the size. */
async function prepare(bus: Pgbus, job: JobDefinition, payloads: readonly unknown[]): Promise<unknown[]> {
  bus.registry.add(job);
  const prepared: unknown[] = [];
  for (const [index, payload] of payloads.entries()) {
    if (job.schema) {
      const result = await job.schema["~standard"].validate(payload);
      if (result.issues) {
        const issues = result.issues.map((issue) => issue.message).join("; ");
        throw new ValidationError("INVALID_PAYLOAD", `payload ${index} of job ${job.name} is invalid: ${issues}`);
      }
    }
    const body = serializeJson({ job: job.name, payload }, `payload ${index} of job ${job.name}`);
    prepared.push((JSON.parse(body) as { payload: unknown }).payload);
  }
  return prepared;
}

async function enqueueMany(
  bus: Pgbus,
  state: TestState,
  job: JobDefinition,
  payloads: readonly unknown[],
  options: EnqueueOptions,
): Promise<string[]> {
  const prepared = await prepare(bus, job, payloads);
  const ids: string[] = [];
  for (const payload of prepared) {
    const id = inlineMessageId();
    ids.push(id);
    if (state.mode === "inline") {
      const runs = await runJobInline(job, payload, { retries: state.retries, messageId: id }).catch((error: { runs?: InlineRun[] }) => {
        state.runs.push(...(error.runs ?? []));
        throw error;
      });
      state.runs.push(...runs);
      continue;
    }
    const enqueuedAt = fakeNow(state);
    const runAt = options.runAt ?? new Date(enqueuedAt.getTime() + (options.delayMs ?? 0));
    state.enqueued.push({
      id,
      job: job.name,
      queue: job.queue,
      payload,
      headers: options.headers,
      enqueuedAt,
      runAt,
      inTransaction: options.client !== undefined,
    });
  }
  return ids;
}

async function publish(
  bus: Pgbus,
  state: TestState,
  routingKey: string,
  payload: unknown,
  options: BusPublishOptions,
): Promise<PublishedEvent> {
  validateRoutingKey(routingKey);
  const body = serializeJson({ payload }, `event ${routingKey}`);
  const event: Event = newEvent(routingKey, (JSON.parse(body) as { payload: unknown }).payload);
  const subscribers = bus.registry
    .all()
    .filter(isSubscriberDefinition)
    .filter((s) => topicMatches(s.subscriber.pattern, routingKey));
  if (state.mode === "inline") {
    const message = JSON.parse(JSON.stringify(toEventMessage(event))) as unknown;
    for (const subscriber of subscribers) {
      const runs = await runJobInline(subscriber as JobDefinition, message, { retries: state.retries }).catch(
        (error: { runs?: InlineRun[] }) => {
          state.runs.push(...(error.runs ?? []));
          throw error;
        },
      );
      state.runs.push(...runs);
    }
  } else {
    state.published.push({
      eventId: event.eventId,
      routingKey,
      payload: event.payload,
      headers: options.headers,
      publishedAt: fakeNow(state),
      subscribers: subscribers.map((s) => s.subscriber.name),
      inTransaction: options.client !== undefined,
    });
  }
  return { ...event, queues: subscribers.length };
}
