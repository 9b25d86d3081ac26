import assert from "node:assert/strict";
import { after, before, beforeEach, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { ValidationError } from "../../src/errors.ts";
import { defineJob } from "../../src/jobs/define.ts";
import type { WorkerEvents } from "../../src/observability/events.ts";
import type { Worker } from "../../src/worker/worker.ts";
import { cliEnv, runCli, waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

/**
 * The circuit breaker of a queue, with two workers (two connection pools, as two processes
 * would have) and back-offs of a few hundred ms.
 */

let db: TestDatabase;
let bus: Pgbus;
let failing = true;
let starts: Array<{ at: number; n: number }> = [];
let events: Array<WorkerEvents["queue:breaker"]> = [];
const flaky = defineJob<{ n: number }>({
  name: "flaky",
  queue: "flaky",
  maxRetries: 0,
  perform({ n }) {
    starts.push({ at: Date.now(), n });
    if (failing) throw new Error("down");
  },
});
const BREAKER = { threshold: 3, baseMs: 400, maxMs: 800 };

before(async () => {
  db = await createTestDatabase("breaker");
  bus = new Pgbus({ connectionString: db.url, jobs: [flaky] });
  await bus.migrate();
  bus.on("queue:breaker", (event) => void events.push(event));
});
after(async () => {
  await bus.close();
  await db.drop();
});
beforeEach(async () => {
  failing = true;
  starts = [];
  events = [];
  await db.pool.query("DELETE FROM pgbus.queue_states");
  await db.pool.query("DELETE FROM pgmq.q_flaky");
});

/** Capacity 3: a half-open breaker must still let one job through, not one per free slot. */
async function workers(count: number, breaker: object = BREAKER): Promise<Worker[]> {
  const started = Array.from({ length: count }, () =>
    bus.worker({ queues: ["flaky"], capacity: 3, prefetch: 0, pollIntervalMs: 50, circuitBreaker: breaker }),
  );
  for (const worker of started) await worker.start();
  return started;
}

const enqueue = (from: number, count: number) =>
  bus.enqueueMany(
    flaky,
    Array.from({ length: count }, (_, i) => ({ n: from + i })),
  );
const state = () => bus.queueState("flaky");

test("opens after N failures, stops claims, half-opens with one probe; a failed probe doubles the back-off, a good one closes it", async () => {
  const running = await workers(2);
  try {
    await enqueue(0, 3);
    // The event follows the opening (the worker reads the state after its failure was recorded).
    await waitFor(() => events.length > 0, "the breaker to open", 10_000, 10);
    const opened = await state();
    assert.equal(opened.paused, true);
    assert.equal(opened.pausedBy, "circuit breaker");
    assert.deepEqual(
      { failures: opened.breaker?.consecutiveFailures, backoffMs: opened.breaker?.backoffMs },
      { failures: 3, backoffMs: 400 },
    );
    assert.deepEqual(events, [{ queue: "flaky", state: "open", reason: "failures", backoffMs: 400, consecutiveFailures: 3 }]);

    // While open nothing starts; after the back-off exactly one probe runs (two workers
    // claiming), fails, and opens the breaker again for twice as long.
    const before = starts.length;
    await enqueue(3, 6);
    await waitFor(() => events.length >= 3, "the probe to fail", 10_000, 10);
    assert.deepEqual(
      events.slice(1).map((event) => [event.state, event.reason, event.backoffMs]),
      [
        ["half_open", "probe_started", undefined],
        ["open", "probe_failed", 800],
      ],
    );
    assert.equal(starts.length - before, 1, "one probe, not more");
    assert.ok(starts.at(-1)!.at - opened.breaker!.openedAt!.getTime() >= 350, "no job started during the back-off");
    assert.equal((await state()).breaker?.backoffMs, 800);

    // The next probe fails too: the back-off stays at maxMs.
    await waitFor(() => events.length >= 5, "the second probe to fail", 10_000, 10);
    assert.deepEqual(
      events.slice(3).map((event) => [event.state, event.reason, event.backoffMs]),
      [
        ["half_open", "probe_started", undefined],
        ["open", "probe_failed", 800],
      ],
    );

    // The next probe succeeds: the breaker closes and the rest run.
    failing = false;
    await waitFor(
      async () => (await db.pool.query("SELECT count(*)::int AS n FROM pgmq.q_flaky")).rows[0].n === 0,
      "the rest to run",
      10_000,
      10,
    );
    assert.deepEqual(
      events.slice(5).map((event) => [event.state, event.reason]),
      [
        ["half_open", "probe_started"],
        ["closed", "probe_succeeded"],
      ],
    );
    const closed = await state();
    assert.deepEqual(
      [closed.paused, closed.breaker?.state, closed.breaker?.consecutiveFailures, closed.breaker?.backoffMs],
      [false, "closed", 0, null],
    );

    // pgbus status shows the breaker.
    const status = await runCli(["status", "--json"], cliEnv(db.url));
    const shown = (JSON.parse(status.stdout) as { queueStates: Array<{ queue: string; breaker: { state: string; threshold: number } }> })
      .queueStates;
    assert.deepEqual(
      shown.map((entry) => [entry.queue, entry.breaker.state, entry.breaker.threshold]),
      [["flaky", "closed", 3]],
    );
    const table = (await runCli(["status"], cliEnv(db.url))).stdout;
    assert.match(table, /PAUSED QUEUES AND CIRCUIT BREAKERS\n.*\nflaky +no +- +closed +0\/3/);
  } finally {
    for (const worker of running) await worker.stop();
  }
});

test("a success resets the count of consecutive failures", async () => {
  const running = await workers(1);
  try {
    await enqueue(0, 2);
    await waitFor(() => starts.length === 2, "two failures", 10_000, 10);
    await waitFor(async () => (await state()).breaker?.consecutiveFailures === 2, "two counted", 10_000, 10);
    failing = false;
    await enqueue(2, 1);
    await waitFor(async () => (await state()).breaker?.consecutiveFailures === 0, "the success to reset the count", 10_000, 10);
    failing = true;
    await enqueue(3, 2);
    await waitFor(async () => (await state()).breaker?.consecutiveFailures === 2, "two more failures", 10_000, 10);
    assert.equal((await state()).breaker?.state, "closed");
  } finally {
    for (const worker of running) await worker.stop();
  }
});

/** One worker on a breaker that opens after 2 failures for a minute: opens it, then runs `body`. */
async function withOpenBreaker(body: () => Promise<void>): Promise<void> {
  const running = await workers(1, { threshold: 2, baseMs: 60_000, maxMs: 60_000 });
  try {
    await enqueue(0, 2);
    await waitFor(() => events.some((event) => event.state === "open"), "the breaker to open", 10_000, 10);
    await body();
  } finally {
    for (const worker of running) await worker.stop();
  }
}

test("a manual resume closes an open breaker; a manual pause takes over from it (no probe)", () =>
  withOpenBreaker(async () => {
    failing = false;
    await enqueue(2, 2);
    assert.equal(await bus.resumeQueue("flaky"), true);
    await waitFor(() => starts.length === 4, "the queue to run again", 10_000, 10);
    const resumed = await state();
    assert.deepEqual([resumed.paused, resumed.breaker?.state, resumed.breaker?.consecutiveFailures], [false, "closed", 0]);
    assert.deepEqual(events.at(-1), { queue: "flaky", state: "closed", reason: "resumed" });

    // Open it again, then pause by hand: the breaker hands over, and nothing probes.
    failing = true;
    await enqueue(4, 2);
    await waitFor(async () => (await state()).breaker?.state === "open", "the breaker to open again", 10_000, 10);
    await bus.pauseQueue("flaky", { pausedBy: "ops" });
    await db.pool.query("UPDATE pgbus.queue_states SET breaker_until = now() - interval '1 second'"); // a due back-off is ignored
    await enqueue(6, 1);
    const paused = await state();
    assert.deepEqual([paused.paused, paused.pausedBy, paused.breaker?.state], [true, "ops", "closed"]);
    const count = starts.length;
    await new Promise((resolve) => setTimeout(resolve, 300)); // several polls: a probe would have started
    assert.equal(starts.length, count, "no probe under a manual pause");
  }));

test("a half-open breaker whose probe never settled (its worker died) lets a next probe through after the probe's VT", () =>
  withOpenBreaker(async () => {
    failing = false;
    await enqueue(2, 3);
    // As a probe claimed by a worker that was then SIGKILLed leaves it, once its VT ran out.
    await db.pool.query(
      "UPDATE pgbus.queue_states SET breaker_state = 'half_open', breaker_probe_msg_id = 0, breaker_until = now() - interval '1 second'",
    );
    await waitFor(() => events.some((event) => event.state === "closed"), "a new probe to close the breaker", 10_000, 10);
    await waitFor(() => starts.length === 5, "the rest to run", 10_000, 10);
  }));

test("bad circuit breaker options are refused with a typed error naming the value", () => {
  const refused = (options: unknown, pattern: RegExp) =>
    assert.throws(
      () => bus.worker({ queues: ["flaky"], circuitBreaker: options as never }),
      (error: unknown) => error instanceof ValidationError && error.code === "INVALID_CIRCUIT_BREAKER" && pattern.test(error.message),
    );
  refused({ threshold: 0 }, /threshold must be an integer from 1 to \d+, got 0/);
  refused({ baseMs: -5 }, /baseMs must be an integer from 1 to \d+, got -5/);
  refused({ baseMs: 1_000, maxMs: 500 }, /maxMs must be >= baseMs \(1000\), got 500/);
  refused({ treshold: 3 }, /unknown option treshold/);
  refused("yes", /must be true or \{ threshold\?, baseMs\?, maxMs\? \}, got "yes"/);
});
