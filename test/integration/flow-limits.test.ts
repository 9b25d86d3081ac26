import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, test } from "node:test";
import pg from "pg";
import { Pgbus } from "../../src/bus.ts";
import { runStatement } from "../../src/db/queryable.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { ADMIT_LEASED, SWEEP_LIMITS } from "../../src/queue/limits-sql.ts";
import type { Worker } from "../../src/worker/worker.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

/**
 * Flow limits inside one test process: two workers (each with its own connections, as two
 * processes would have) share every limit through PostgreSQL. The cross-process run with a
 * SIGKILL is in flow-limits-processes.test.ts.
 */

interface Span {
  key: string;
  n: number;
  start: number;
  end: number | null;
}
const spans: Span[] = [];

async function recordSpan(key: string, n: number, ms: number): Promise<void> {
  const span: Span = { key, n, start: performance.now(), end: null };
  spans.push(span);
  await sleep(ms);
  span.end = performance.now();
}

const serial = defineJob<{ key: string; n: number }>({
  name: "serial",
  queue: "serial",
  concurrency: { key: (p) => p.key, limit: 1 },
  perform: ({ key, n }) => recordSpan(key, n, 15),
});

let releaseHeld: () => void = () => {};
const held = new Promise<void>((resolve) => (releaseHeld = resolve));
const exclusive = defineJob<{ n: number }>({
  name: "exclusive",
  queue: "exclusive",
  concurrency: { limit: 1, onLimit: "discard" },
  async perform({ n }) {
    spans.push({ key: "exclusive", n, start: performance.now(), end: null });
    await held;
  },
});

const rated = defineJob<{ n: number }>({
  name: "rated",
  queue: "rated",
  rateLimit: { limit: 10, intervalMs: 1_000 },
  perform: ({ n }) => recordSpan("rated", n, 1),
});

const badKey = defineJob<{ n: number }>({
  name: "bad_key",
  queue: "bad_key",
  concurrency: {
    limit: 2,
    key: (p) => {
      if (p.n === 1) throw new Error("no tenant in this payload");
      return p.n === 2 ? (42 as unknown as string) : "fine";
    },
  },
  perform: ({ n }) => recordSpan("bad_key", n, 1),
});

const swept = defineJob<{ n: number }>({
  name: "swept",
  queue: "swept",
  concurrency: { limit: 1 },
  perform: ({ n }) => recordSpan("swept", n, 1),
});

const misrated = defineJob<{ n: number }>({ name: "misrated", queue: "misrated", perform: ({ n }) => recordSpan("misrated", n, 1) });

const plain = defineJob<{ n: number }>({ name: "plain", queue: "queue_rated", perform: ({ n }) => recordSpan("queue_rated", n, 1) });

// A queue of its own for the routing test: a job without limits beside one whose limit (1 per key, a key per job) never binds.
const unlimited = defineJob<{ n: number }>({ name: "unlimited", queue: "routed", perform: ({ n }) => recordSpan("routed", n, 1) });
const unbound = defineJob<{ n: number }>({
  name: "unbound",
  queue: "routed",
  concurrency: { key: (p) => `key-${p.n}`, limit: 1 },
  perform: ({ n }) => recordSpan("routed", n, 1),
});

// A limit that never binds here: 4 keys, 1,000 runs each at once.
const roomy = defineJob<{ n: number }>({
  name: "roomy",
  queue: "roomy",
  concurrency: { key: (p) => `k${p.n % 4}`, limit: 1_000 },
  perform: ({ n }) => recordSpan("roomy", n, 1),
});

// A rate limit that never binds here.
const paced = defineJob<{ n: number }>({
  name: "paced",
  queue: "paced",
  rateLimit: { limit: 1_000_000, intervalMs: 60_000 },
  perform: ({ n }) => recordSpan("paced", n, 1),
});

// A pool filler, and a rate-limited job whose queue comes after it in the worker's order.
const filler = defineJob<{ n: number }>({ name: "filler", queue: "filler", perform: ({ n }) => recordSpan("filler", n, 400) });
const ratedLate = defineJob<{ n: number }>({
  name: "rated_late",
  queue: "rated_late",
  rateLimit: { limit: 5, intervalMs: 1_000 },
  perform: ({ n }) => recordSpan("rated_late", n, 1),
});

const ratedQueued = defineJob<{ n: number }>({
  name: "rated_queued",
  queue: "rated_queued",
  rateLimit: { limit: 100, intervalMs: 10_000 },
  perform: ({ n }) => recordSpan("rated_queued", n, 1),
});

const ratedStalled = defineJob<{ n: number }>({
  name: "rated_stalled",
  queue: "rated_stalled",
  rateLimit: { limit: 5, intervalMs: 1_000 },
  perform: ({ n }) => recordSpan("rated_stalled", n, 1),
});

// Limit 2 for the whole job; each run holds until the test lets it end.
let releaseShared: () => void = () => {};
const sharedHeld = new Promise<void>((resolve) => (releaseShared = resolve));
const shared = defineJob<{ n: number }>({
  name: "shared",
  queue: "shared",
  concurrency: { limit: 2 },
  async perform({ n }) {
    spans.push({ key: "shared", n, start: performance.now(), end: null });
    await sharedHeld;
  },
});

let db: TestDatabase;
let bus: Pgbus;
const workers: Worker[] = [];

before(async () => {
  db = await createTestDatabase("flow_limits");
  bus = new Pgbus({
    connectionString: db.url,
    jobs: [
      serial,
      exclusive,
      rated,
      badKey,
      plain,
      swept,
      misrated,
      unlimited,
      unbound,
      roomy,
      paced,
      filler,
      ratedLate,
      ratedStalled,
      ratedQueued,
    ],
  });
  await bus.migrate();
});
after(async () => {
  releaseHeld();
  releaseShared();
  await Promise.all(workers.map((worker) => worker.stop()));
  await bus.close();
  await db.drop();
});

async function startWorkers(count: number, options: Parameters<Pgbus["worker"]>[0]): Promise<Worker[]> {
  const started = Array.from({ length: count }, () => bus.worker(options));
  workers.push(...started);
  await Promise.all(started.map((worker) => worker.start()));
  return started;
}

/** The most spans of `key` running at one instant. */
function maxOverlap(key: string): number {
  const edges = spans
    .filter((span) => span.key === key)
    .flatMap((span) => [
      { at: span.start, delta: 1 },
      { at: span.end ?? Infinity, delta: -1 },
    ])
    .sort((a, b) => a.at - b.at || a.delta - b.delta);
  let running = 0;
  let most = 0;
  for (const edge of edges) most = Math.max(most, (running += edge.delta));
  return most;
}

/** The most starts of `key` in any window of `windowMs`. */
function maxStartsInWindow(key: string, windowMs: number): number {
  const starts = spans
    .filter((span) => span.key === key)
    .map((span) => span.start)
    .sort((a, b) => a - b);
  let most = 0;
  for (let first = 0, last = 0; last < starts.length; last++) {
    while (starts[last]! - starts[first]! >= windowMs) first++;
    most = Math.max(most, last - first + 1);
  }
  return most;
}

test("limit 1 with a key: each key's jobs run one at a time across two workers, and all of them run", async () => {
  const keys = ["a", "b", "c"];
  await bus.enqueueMany(
    serial,
    Array.from({ length: 45 }, (_, n) => ({ key: keys[n % 3]!, n })),
  );
  await startWorkers(2, { queues: ["serial"], capacity: 10 });
  await waitFor(() => spans.filter((span) => keys.includes(span.key) && span.end !== null).length === 45, "all 45 serial jobs", 30_000);
  for (const key of keys) assert.equal(maxOverlap(key), 1, `key ${key} ran more than one job at once`);
  // Nothing stays behind: no unit held and no waiter (units a worker stops using go back after a second).
  await waitFor(async () => {
    const left = await db.pool.query(
      "SELECT (SELECT count(*) FROM pgbus.concurrency_leases)::int AS leases, (SELECT count(*) FROM pgbus.blocked)::int AS blocked",
    );
    return left.rows[0].leases === 0 && left.rows[0].blocked === 0;
  }, "no lease and no waiter left");
});

test('onLimit "discard": jobs over the limit are archived with a pgbus_discarded header, not run', async () => {
  await startWorkers(1, { queues: ["exclusive"], capacity: 5 });
  await bus.enqueue(exclusive, { n: 0 });
  await waitFor(() => spans.some((span) => span.key === "exclusive"), "the first exclusive job to start");
  await bus.enqueueMany(exclusive, [{ n: 1 }, { n: 2 }, { n: 3 }]);
  const discarded = await waitFor(async () => {
    const rows = (await db.pool.query("SELECT message, headers FROM pgmq.a_exclusive WHERE headers ? 'pgbus_discarded' ORDER BY msg_id"))
      .rows;
    return rows.length === 3 ? rows : null;
  }, "3 discarded jobs in the archive");
  assert.deepEqual(
    discarded.map((row: { message: { payload: { n: number } } }) => row.message.payload.n),
    [1, 2, 3],
  );
  assert.deepEqual(
    (discarded[0] as { headers: { pgbus_discarded: Record<string, unknown> } }).headers.pgbus_discarded["reason"],
    "concurrency_limit",
  );
  assert.equal(spans.filter((span) => span.key === "exclusive").length, 1, "only the first one ran");
  releaseHeld();
});

test("a rate limit holds across two workers: no window of the interval holds more than the limit", async () => {
  await bus.enqueueMany(
    rated,
    Array.from({ length: 30 }, (_, n) => ({ n })),
  );
  const started = performance.now();
  await startWorkers(2, { queues: ["rated"], capacity: 10 });
  await waitFor(() => spans.filter((span) => span.key === "rated" && span.end !== null).length === 30, "all 30 rated jobs", 30_000);
  // Admission is counted in the database; a start follows its admission within a few ms.
  assert.ok(
    maxStartsInWindow("rated", 1_000) <= 11,
    `at most 10 (+1 for timing) starts per second, saw ${maxStartsInWindow("rated", 1_000)}`,
  );
  assert.ok(performance.now() - started >= 2_000, "30 starts at 10 per second take at least 2 s");
});

test("a rate-limited job is admitted only when it can start: runs of another queue filling the pool do not push its starts into the next window", async () => {
  // The fillers take every slot for 400 ms; a rated job admitted meanwhile would start only then, and the
  // window's next 5 starts (admitted a second after the first 5) would then fall within a second of them.
  await bus.enqueueMany(
    filler,
    Array.from({ length: 5 }, (_, n) => ({ n })),
  );
  await bus.enqueueMany(
    ratedLate,
    Array.from({ length: 10 }, (_, n) => ({ n })),
  );
  await startWorkers(1, { queues: ["filler", "rated_late"], capacity: 5, prefetch: 5 });
  await waitFor(() => spans.filter((span) => span.key === "rated_late" && span.end !== null).length === 10, "all 10 rated jobs", 30_000);
  assert.ok(maxStartsInWindow("rated_late", 1_000) <= 5, `at most 5 starts in any second, saw ${maxStartsInWindow("rated_late", 1_000)}`);
});

test("a rate admission whose answer reaches the worker too late (a stalled process) is given back unstarted, not run late", async () => {
  // The first admission of rated_stalled reaches the worker 300 ms after PostgreSQL counted its starts, as
  // if the process had been descheduled: run then, its 5 starts would share a second with the next 5.
  const query = pg.Client.prototype.query;
  let stalled = false;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const config = args[0] as { name?: string; values?: unknown[] } | null;
    if (!stalled && config?.name === ADMIT_LEASED.name && config.values?.[0] === "rated_stalled") {
      stalled = true;
      const callback = args.at(-1);
      if (typeof callback === "function") args[args.length - 1] = (...results: unknown[]) => setTimeout(() => callback(...results), 300);
    }
    return (query as (...args: unknown[]) => unknown).apply(this, args);
  } as typeof query;
  try {
    await bus.enqueueMany(
      ratedStalled,
      Array.from({ length: 10 }, (_, n) => ({ n })),
    );
    await startWorkers(1, { queues: ["rated_stalled"], capacity: 5 });
    await waitFor(() => spans.filter((span) => span.key === "rated_stalled" && span.end !== null).length === 10, "all 10 jobs", 30_000);
  } finally {
    pg.Client.prototype.query = query;
  }
  assert.ok(stalled, "the first admission was held back");
  assert.ok(
    maxStartsInWindow("rated_stalled", 1_000) <= 5,
    `at most 5 starts in any second, saw ${maxStartsInWindow("rated_stalled", 1_000)}`,
  );
  const runs = await db.pool.query("SELECT sum(read_ct)::int AS attempts FROM pgmq.a_rated_stalled");
  assert.equal(runs.rows[0].attempts, 10, "a message given back unstarted did not count as an attempt");
});

test("an admission that waits for its key's lock (behind other workers' admissions) still starts what it admits", async () => {
  // Another transaction holds the key's lock for 1.5 s, far past the twentieth of the interval (500 ms)
  // an admitted message has to start: the deadline counts from when the starts were recorded, not sent.
  const holder = await db.pool.connect();
  try {
    await holder.query("BEGIN");
    await holder.query("SELECT pgbus.lock_limit_keys(ARRAY['r:job:rated_queued'])");
    await bus.enqueueMany(
      ratedQueued,
      Array.from({ length: 5 }, (_, n) => ({ n })),
    );
    await startWorkers(1, { queues: ["rated_queued"], capacity: 5 });
    await sleep(1_500);
    await holder.query("COMMIT");
  } finally {
    holder.release();
  }
  await waitFor(() => spans.filter((span) => span.key === "rated_queued" && span.end !== null).length === 5, "all 5 jobs", 30_000);
  const recorded = await db.pool.query("SELECT sum(starts)::int AS n FROM pgbus.rate_windows WHERE rate_key = 'job:rated_queued'");
  const reserved = recorded.rows[0].n as number;
  assert.ok(
    reserved <= 10,
    `one admission (5 starts and 5 spare): the first admission's starts were used, not thrown away and reserved again: ${reserved} reserved for 5 runs`,
  );
});

test("a queue's own rate limit (rateLimitFor) holds for every job of the queue", async () => {
  await bus.enqueueMany(
    plain,
    Array.from({ length: 16 }, (_, n) => ({ n })),
  );
  await startWorkers(2, {
    queues: ["queue_rated"],
    capacity: 10,
    rateLimitFor: (queue) => (queue === "queue_rated" ? { limit: 8, intervalMs: 1_000 } : undefined),
  });
  await waitFor(() => spans.filter((span) => span.key === "queue_rated" && span.end !== null).length === 16, "all 16 jobs", 30_000);
  assert.ok(
    maxStartsInWindow("queue_rated", 1_000) <= 9,
    `at most 8 (+1) starts per second, saw ${maxStartsInWindow("queue_rated", 1_000)}`,
  );
});

test("a key function that throws or returns a non-string dead-letters the job with reason invalid_limit_key", async () => {
  await startWorkers(1, { queues: ["bad_key"], capacity: 5 });
  await bus.enqueueMany(badKey, [{ n: 1 }, { n: 2 }, { n: 3 }]);
  const dead = await waitFor(async () => {
    const rows = (await db.pool.query("SELECT message, headers FROM pgmq.q_bad_key_dlq ORDER BY msg_id")).rows;
    return rows.length === 2 ? rows : null;
  }, "2 dead letters");
  const errors = dead.map((row: { headers: { pgbus_error: { reason: string; message: string } } }) => row.headers.pgbus_error);
  assert.deepEqual(
    errors.map((error) => error.reason),
    ["invalid_limit_key", "invalid_limit_key"],
  );
  // The two are dead-lettered concurrently: in either order.
  const messages = errors.map((error) => error.message).sort();
  assert.match(messages[0]!, /concurrency key function of job bad_key must return a non-empty string, returned 42/);
  assert.match(messages[1]!, /concurrency key function of job bad_key threw: no tenant in this payload/);
  await waitFor(() => spans.some((span) => span.key === "bad_key" && span.n === 3), "the job with a good key to run");
});

test("a queue rate limit that is invalid is reported (naming the value) and none of its messages runs", async () => {
  const errors: string[] = [];
  const off = bus.on("worker:error", ({ error }) => void errors.push(error.message));
  await bus.enqueue(misrated, { n: 1 });
  const [worker] = await startWorkers(1, { queues: ["misrated"], capacity: 2, rateLimitFor: () => ({ limit: 0, intervalMs: 1_000 }) });
  await waitFor(() => errors.length > 0, "the error to be reported");
  off();
  await worker!.stop();
  assert.match(errors[0]!, /queue misrated: rateLimit: limit must be an integer >= 1, got 0/);
  assert.ok(!spans.some((span) => span.key === "misrated"), "the job did not run");
});

/**
 * Claims and admits two messages of `swept` (limit 1) by hand, as a worker would: its
 * lease takes the key's one unit and the second message is parked. `processId` is the
 * worker's pgbus.processes row (or null). Returns the waiter's id.
 */
async function holdAndPark(processId: string | null): Promise<string> {
  const [first, second] = await bus.enqueueMany(swept, [{ n: 1 }, { n: 2 }]);
  const claimed = await db.pool.query<{ msg_id: string; read_ct: number }>(
    "UPDATE pgmq.q_swept SET vt = now() + interval '30 seconds', read_ct = read_ct + 1 WHERE msg_id = ANY($1::bigint[]) RETURNING msg_id, read_ct",
    [[first, second]],
  );
  const byId = new Map(claimed.rows.map((row) => [row.msg_id, row.read_ct]));
  const [result] = await runStatement<{ leased: number[]; verdicts: string[] }>(db.pool, false, ADMIT_LEASED, [
    "swept",
    randomUUID(),
    processId,
    30,
    300,
    ["swept"],
    [1],
    [0],
    [2],
    [],
    [],
    [],
    [],
    [],
    [],
    [first, second],
    [byId.get(first!), byId.get(second!)],
    [1, 1],
    [null, null],
    [null, null],
    [false, false],
  ]);
  assert.deepEqual(result!.leased, [1], "the lease gets the one unit the limit has");
  assert.deepEqual(result!.verdicts, ["run", "parked"]);
  return second!;
}

/** The maintenance pass hands the unit to the parked message, which then runs. */
async function sweepWakes(waiter: string): Promise<void> {
  const sweep = await db.pool.query(SWEEP_LIMITS);
  assert.equal(sweep.rows[0].woken, 1);
  const row = await db.pool.query("SELECT vt <= clock_timestamp() AS visible, read_ct FROM pgmq.q_swept WHERE msg_id = $1", [waiter]);
  assert.deepEqual(row.rows[0], { visible: true, read_ct: 0 }, "visible again, and waiting did not count as an attempt");
  assert.equal((await db.pool.query("SELECT count(*)::int AS n FROM pgbus.concurrency_leases WHERE sem_key = 'swept'")).rows[0].n, 0);
}

test("the maintenance sweep wakes the waiter of a key whose holder stopped renewing its lease, before the park backstop", async () => {
  const waiter = await holdAndPark(null);
  assert.equal((await db.pool.query(SWEEP_LIMITS)).rows[0].woken, 0, "a lease within its time to live keeps its unit");
  // The holder died (or froze) without giving its unit back: its lease runs out.
  await db.pool.query("UPDATE pgbus.concurrency_leases SET expires_at = clock_timestamp() - interval '1 second' WHERE sem_key = 'swept'");
  await sweepWakes(waiter);
  const [worker] = await startWorkers(1, { queues: ["swept"], capacity: 2 });
  await waitFor(() => spans.some((span) => span.key === "swept" && span.n === 2 && span.end !== null), "the waiter to run");
  await worker!.stop(); // the next test claims this queue by hand
});

test("a lease whose holder's process row is gone is freed before its time to live runs out (after a 10 s grace)", async () => {
  const processId = randomUUID();
  await db.pool.query("INSERT INTO pgbus.processes (id, role, host, pid) VALUES ($1, 'worker', 'test', 1)", [processId]);
  const waiter = await holdAndPark(processId);
  await db.pool.query("UPDATE pgbus.concurrency_leases SET created_at = created_at - interval '11 seconds' WHERE sem_key = 'swept'");
  assert.equal((await db.pool.query(SWEEP_LIMITS)).rows[0].woken, 0, "a live holder keeps its unit");
  // The process dies: its supervisor deletes its row; its lease has 30 s left.
  await db.pool.query("DELETE FROM pgbus.processes WHERE id = $1", [processId]);
  await sweepWakes(waiter);
});

test("a claimed message is routed once, whether its job has a limit that does not bind (the gate routes it) or none", async () => {
  const routed = new Map<string, number>();
  const countingRoute: NonNullable<Parameters<Pgbus["worker"]>[0]["routeMessage"]> = (_queue, message) => {
    const { job, payload } = message as { job: string; payload: { n: number } };
    const key = `${job}:${payload.n}`;
    routed.set(key, (routed.get(key) ?? 0) + 1);
    return { job, payload };
  };
  await bus.enqueueMany(
    unlimited,
    Array.from({ length: 20 }, (_, n) => ({ n })),
  );
  await bus.enqueueMany(
    unbound,
    Array.from({ length: 5 }, (_, n) => ({ n: 100 + n })),
  );
  await startWorkers(1, { queues: ["routed"], capacity: 10, routeMessage: countingRoute });
  await waitFor(() => spans.filter((span) => span.key === "routed" && span.end !== null).length === 25, "all 25 jobs to finish");
  assert.equal(routed.size, 25);
  assert.deepEqual(
    [...routed].filter(([, calls]) => calls !== 1),
    [],
    "every message routed exactly once",
  );
});

/** Drains 400 jobs of `job` with one worker (capacity 10) and counts its claim and admission statements. */
async function countStatements(job: typeof roomy): Promise<{ claims: number; admissions: number }> {
  // Counted on their way to PostgreSQL (the worker opens a pool of its own).
  const counts = { claims: 0, admissions: 0 };
  const query = pg.Client.prototype.query;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const name = (args[0] as { name?: string } | null)?.name ?? "";
    if (name === ADMIT_LEASED.name) counts.admissions++;
    if (name.startsWith("pgbus_claim_") && name.endsWith(`_${job.queue}`)) counts.claims++;
    return (query as (...args: unknown[]) => unknown).apply(this, args);
  } as typeof query;
  try {
    await bus.enqueueMany(
      job,
      Array.from({ length: 400 }, (_, n) => ({ n })),
    );
    const [worker] = await startWorkers(1, { queues: [job.queue], capacity: 10 });
    await waitFor(() => spans.filter((span) => span.key === job.queue && span.end !== null).length === 400, "all 400 jobs", 30_000);
    await worker!.stop();
  } finally {
    pg.Client.prototype.query = query;
  }
  assert.ok(counts.claims >= 14, `the drain took at least 400 / 30 claims, counted ${counts.claims}`);
  return counts;
}

test("a concurrency limit that does not bind admits from the worker's lease: at most one admission statement per 4 claims", async () => {
  const { claims, admissions } = await countStatements(roomy);
  assert.ok(
    admissions > 0 && admissions * 4 <= claims,
    `the lease grows in a few steps, then covers every claim: ${admissions} admissions for ${claims} claims`,
  );
  assert.equal(maxOverlap("roomy") <= 10, true);
  // The worker's stop gave its units back.
  assert.equal((await db.pool.query("SELECT count(*)::int AS n FROM pgbus.concurrency_leases WHERE sem_key LIKE 'roomy%'")).rows[0].n, 0);
});

test("a rate limit that does not bind admits from starts reserved ahead: at most one admission statement per 4 claims", async () => {
  const { claims, admissions } = await countStatements(paced);
  assert.ok(
    admissions > 0 && admissions * 4 <= claims,
    `each reservation covers several claims: ${admissions} admissions for ${claims} claims`,
  );
  const recorded = await db.pool.query("SELECT coalesce(sum(starts), 0)::int AS n FROM pgbus.rate_windows WHERE rate_key = 'job:paced'");
  assert.ok(recorded.rows[0].n >= 400, `every start was recorded (reserved ahead), saw ${recorded.rows[0].n}`);
});

test("a worker gives back the spare units of a key as soon as another worker parks a message of it (NOTIFY), not at its next renewal", async () => {
  const heldUnits = async () =>
    (await db.pool.query("SELECT coalesce(sum(held), 0)::int AS n FROM pgbus.concurrency_leases WHERE sem_key = 'shared'")).rows[0].n;
  // A runs one job and, nobody waiting, holds both units of the limit (one spare).
  const [first] = await startWorkers(1, { queues: ["shared"], capacity: 1, prefetch: 0, visibilityTimeoutSec: 60 });
  await bus.enqueue(shared, { n: 1 });
  await waitFor(() => spans.some((span) => span.key === "shared" && span.n === 1), "the first job to start");
  assert.equal(await heldUnits(), 2, "the running worker holds a spare unit");
  // B claims the next one and finds the limit taken: it parks it, and A hands its spare unit on.
  const [second] = await startWorkers(1, { queues: ["shared"], capacity: 2, prefetch: 0, visibilityTimeoutSec: 60 });
  await bus.enqueue(shared, { n: 2 });
  // Without the NOTIFY, A would learn of the waiter at its lease renewal, 5 s later.
  await waitFor(() => spans.some((span) => span.key === "shared" && span.n === 2), "the second job to start while the first runs", 4_000);
  assert.equal(await heldUnits(), 2, "one unit each");
  releaseShared();
  await Promise.all([first!.stop(), second!.stop()]);
  assert.equal(await heldUnits(), 0, "stopped workers hold nothing");
  assert.equal((await db.pool.query("SELECT count(*)::int AS n FROM pgbus.blocked WHERE sem_key = 'shared'")).rows[0].n, 0);
});
