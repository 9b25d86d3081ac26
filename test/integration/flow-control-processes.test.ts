import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { batchDead, batchFinish, batchSuccess, batchWork, brittle } from "../fixtures/process/flow-jobs.ts";
import { FIXTURE_CONFIG, type CliProcess, cliEnv, killAll, startCli, waitFor } from "../fixtures/process/spawn.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";

/**
 * Batches and the circuit breaker across processes. Two `pgbus start` processes run the
 * jobs of a batch, and every callback is enqueued exactly once with exact counts, even
 * when the last jobs of a batch finish at the same instant in both, and when one worker is
 * SIGKILLed mid-batch. A breaker set in the config file opens for both processes and lets
 * exactly one probe through.
 */

const FLOW_JOBS = fileURLToPath(new URL("../fixtures/process/flow-jobs.ts", import.meta.url));

after(killAll);

const BREAKER = { threshold: 2, baseMs: 500, maxMs: 1_000 };

/** One database and two `pgbus start` processes (capacity 25, VT 2 s) for all tests; the kill comes last. */
let db: TestDatabase;
let bus: Pgbus;
let workers: CliProcess[];

before(async () => {
  db = await createTestDatabase("batch_procs");
  bus = new Pgbus({ connectionString: db.url, jobs: [batchWork, batchFinish, batchSuccess, batchDead, brittle] });
  await bus.migrate();
  await db.pool.query("CREATE TABLE runs (msg_id bigint NOT NULL, job text NOT NULL, pid integer NOT NULL)");
  await db.pool.query(
    "CREATE TABLE batch_callbacks (batch_id text NOT NULL, on_what text NOT NULL, result jsonb NOT NULL, pid integer NOT NULL)",
  );
  await db.pool.query("CREATE TABLE brittle_switch (failing boolean NOT NULL); INSERT INTO brittle_switch VALUES (true)");
  const config = {
    jobsModule: FLOW_JOBS,
    workers: [{ queues: ["work", "brk"], capacity: 25, visibilityTimeoutSec: 2 }],
    pollIntervalMs: 100,
    queues: { brk: { circuitBreaker: BREAKER } },
  };
  workers = [0, 1].map(() => startCli(["start", "--config", FIXTURE_CONFIG, "--only", "workers"], cliEnv(db.url, config)));
  for (const worker of workers) await worker.waitForMessage("child started");
});
after(async () => {
  await killAll();
  await bus.close();
  await db.drop();
});

async function callbacksOf(): Promise<Array<{ batch_id: string; on_what: string; result: Record<string, unknown> }>> {
  return (await db.pool.query("SELECT batch_id, on_what, result FROM batch_callbacks ORDER BY batch_id, on_what")).rows;
}

test("a circuit breaker from the config file holds across two processes: opens, lets exactly one probe through, closes", async () => {
  const brittleRuns = async () => (await db.pool.query("SELECT count(*)::int AS n FROM runs WHERE job = 'brittle'")).rows[0].n as number;
  await bus.enqueueMany(brittle, [{ n: 0 }, { n: 1 }]);
  await waitFor(async () => (await bus.queueState("brk")).breaker?.state === "open", "the breaker to open", 15_000, 20);
  const opened = (await bus.queueState("brk")).breaker!;
  assert.deepEqual({ threshold: opened.threshold, baseMs: opened.baseMs, maxMs: opened.maxMs }, BREAKER, "the config's settings");
  assert.equal(await brittleRuns(), 2);

  // Six more wait; after 500 ms one probe runs (in one of the two processes), fails, and the
  // breaker opens again for 1,000 ms.
  await bus.enqueueMany(
    brittle,
    [2, 3, 4, 5, 6, 7].map((n) => ({ n })),
  );
  await waitFor(async () => (await bus.queueState("brk")).breaker?.backoffMs === 1_000, "the probe to fail", 15_000, 20);
  assert.equal(await brittleRuns(), 3, "exactly one probe across both processes");

  // The next probe succeeds: the breaker closes and the other four run (the failed probe is dead).
  await db.pool.query("UPDATE brittle_switch SET failing = false");
  await waitFor(
    async () => (await db.pool.query("SELECT count(*)::int AS n FROM pgmq.q_brk")).rows[0].n === 0,
    "the queue to drain",
    15_000,
    20,
  );
  assert.equal(await brittleRuns(), 8);
  assert.equal((await db.pool.query("SELECT count(*)::int AS n FROM pgmq.q_brk_dlq")).rows[0].n, 3);
  const closed = await bus.queueState("brk");
  assert.deepEqual([closed.paused, closed.breaker?.state, closed.breaker?.consecutiveFailures], [false, "closed", 0]);
});

test("many batches whose last jobs finish at the same instant in two processes: one callback each", async () => {
  // 40 batches of 2 jobs; all 80 jobs wait for the same moment, then finish together: the
  // two jobs of a batch are acked at once by the two processes (or in one flush of one).
  const at = Date.now() + 3_000;
  const batches = [];
  for (let i = 0; i < 40; i++) {
    const batch = bus.batch({ onFinish: batchFinish, context: i });
    await batch.enqueueMany(batchWork, [
      { n: 0, at },
      { n: 1, at, dead: i % 10 === 0 },
    ]);
    await batch.seal();
    batches.push(batch);
  }
  await waitFor(async () => (await callbacksOf()).length >= 40, "40 callbacks", 25_000, 50);
  await waitFor(
    async () => (await db.pool.query("SELECT count(*)::int AS n FROM pgmq.q_work")).rows[0].n === 0,
    "the queue to drain",
    10_000,
    50,
  );
  const seen = await callbacksOf();
  assert.equal(seen.length, 40, "exactly one callback per batch");
  for (const [i, batch] of batches.entries()) {
    const mine = seen.filter((row) => row.batch_id === batch.id);
    const dead = i % 10 === 0 ? 1 : 0;
    assert.deepEqual(
      mine.map((row) => row.result),
      [{ batchId: batch.id, succeeded: 2 - dead, dead, total: 2, context: i }],
    );
  }
  const pids = await db.pool.query("SELECT count(DISTINCT pid)::int AS n FROM runs");
  assert.equal(pids.rows[0].n, 2, "both processes ran jobs");
});

test("a 1,000-job batch over two processes, one worker SIGKILLed mid-batch: each callback once, with exact counts", async () => {
  await db.pool.query("TRUNCATE runs, batch_callbacks");
  const [child] = await workers[0]!.waitForMessage("child started");
  const batch = bus.batch({ onFinish: batchFinish, onSuccess: batchSuccess, onDead: batchDead, context: { run: "kill" } });
  const payloads = Array.from({ length: 1_000 }, (_, n) => ({ n, dead: n % 40 === 0, ms: 5 }));
  await batch.enqueueMany(batchWork, payloads.slice(0, 500));
  await batch.enqueueMany(batchWork, payloads.slice(500));
  await batch.seal();

  // Kill one worker child while it has batch jobs in flight; its jobs come back after their VT.
  await waitFor(
    async () => (await db.pool.query("SELECT count(*)::int AS n FROM runs WHERE pid = $1", [child!.pid])).rows[0].n >= 50,
    "the first child to run jobs",
    20_000,
    20,
  );
  process.kill(child!.pid, "SIGKILL");

  await waitFor(async () => (await callbacksOf()).length === 2, "the callbacks", 25_000, 50);
  const expected = { batchId: batch.id, succeeded: 975, dead: 25, total: 1_000, context: { run: "kill" } };
  assert.deepEqual(await callbacksOf(), [
    { batch_id: batch.id, on_what: "dead", result: expected },
    { batch_id: batch.id, on_what: "finish", result: expected },
  ]);
  const { rows } = await db.pool.query("SELECT count(DISTINCT msg_id)::int AS jobs, count(DISTINCT pid)::int AS pids FROM runs");
  assert.equal(rows[0].jobs, 975, "every job that was not dead succeeded");
  assert.ok(rows[0].pids >= 2, "both processes ran jobs");
  const state = await db.pool.query("SELECT total, succeeded, dead, finished_at IS NOT NULL AS finished FROM pgbus.batches WHERE id = $1", [
    batch.id,
  ]);
  assert.deepEqual(state.rows, [{ total: 1_000, succeeded: 975, dead: 25, finished: true }]);
});
