import { AssertionError } from "node:assert";
import type { Pgbus } from "../bus.ts";
import type { JobDefinition } from "../jobs/define.ts";
import { type PayloadMatcher, matches, show } from "./match.ts";
import { type EnqueuedRecord, type PublishedRecord, testState } from "./modes.ts";
import { notFake } from "./run.ts";
import { topicMatches } from "../events/routing.ts";

/** How many matching records an expectation wants: exactly `count`, or at least one. */
export interface ExpectOptions {
  count?: number;
}

function jobName(job: JobDefinition | string): string {
  return typeof job === "string" ? job : job.name;
}

/** What fake mode recorded, optionally only one job's (by definition or name). */
export function enqueued<P = unknown>(bus: Pgbus, job?: JobDefinition<P> | string): EnqueuedRecord<P>[] {
  const state = testState(bus);
  if (!state) throw notFake("enqueued");
  const name = job === undefined ? undefined : jobName(job as JobDefinition | string);
  return state.enqueued.filter((record) => name === undefined || record.job === name) as EnqueuedRecord<P>[];
}

/** What fake mode recorded as published, optionally only for a routing key or a pattern (`orders.*`). */
export function published<P = unknown>(bus: Pgbus, routingKey?: string): PublishedRecord<P>[] {
  const state = testState(bus);
  if (!state) throw notFake("published");
  return state.published.filter(
    (record) => routingKey === undefined || topicMatches(routingKey, record.routingKey),
  ) as PublishedRecord<P>[];
}

function check<R>(what: string, found: R[], all: unknown[], options: ExpectOptions, describeAll: () => string): R[] {
  const ok = options.count === undefined ? found.length > 0 : found.length === options.count;
  if (!ok) {
    const wanted = options.count === undefined ? "at least one" : `exactly ${options.count}`;
    throw new AssertionError({
      message: `expected ${wanted} ${what}, found ${found.length}. Recorded (${all.length}):\n${describeAll() || "  (nothing)"}`,
      actual: found.length,
      expected: options.count ?? 1,
      operator: options.count === undefined ? ">=" : "===",
    });
  }
  return found;
}

/**
 * Asserts that fake mode recorded an enqueue of `job` whose payload matches (see
 * PayloadMatcher: a partial object, a predicate, or vitest/jest asymmetric matchers).
 * Returns the matching records. Throws node's AssertionError, which every test runner reports.
 */
export function expectEnqueued<P>(
  bus: Pgbus,
  job: JobDefinition<P> | string,
  payload?: PayloadMatcher<P>,
  options: ExpectOptions = {},
): EnqueuedRecord<P>[] {
  const all = enqueued(bus);
  const name = jobName(job as JobDefinition | string);
  const found = all.filter((record) => record.job === name && matches(payload, record.payload)) as EnqueuedRecord<P>[];
  return check(`enqueue of ${name}${payload === undefined ? "" : ` with payload matching ${show(payload)}`}`, found, all, options, () =>
    all.map((record) => `  ${record.job} ${show(record.payload)}`).join("\n"),
  );
}

/** Asserts that no enqueue of `job` (with a matching payload, if given) was recorded. */
export function expectNotEnqueued<P>(bus: Pgbus, job: JobDefinition<P> | string, payload?: PayloadMatcher<P>): void {
  expectEnqueued(bus, job, payload, { count: 0 });
}

/** Asserts that fake mode recorded a publish to `routingKey` (or a pattern such as `orders.*`) whose payload matches. */
export function expectPublished<P>(
  bus: Pgbus,
  routingKey: string,
  payload?: PayloadMatcher<P>,
  options: ExpectOptions = {},
): PublishedRecord<P>[] {
  const all = published(bus);
  const found = all.filter(
    (record) => topicMatches(routingKey, record.routingKey) && matches(payload, record.payload),
  ) as PublishedRecord<P>[];
  return check(
    `publish to ${routingKey}${payload === undefined ? "" : ` with payload matching ${show(payload)}`}`,
    found,
    all,
    options,
    () => all.map((record) => `  ${record.routingKey} ${show(record.payload)}`).join("\n"),
  );
}

/** Asserts that nothing was published to `routingKey` (or a pattern), with a matching payload if given. */
export function expectNotPublished<P>(bus: Pgbus, routingKey: string, payload?: PayloadMatcher<P>): void {
  expectPublished(bus, routingKey, payload, { count: 0 });
}
