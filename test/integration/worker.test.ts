import assert from "node:assert/strict";
import { after, afterEach, before, beforeEach, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Pgbus } from "../../src/bus.ts";
import type { WorkerEvents } from "../../src/observability/events.ts";
import type { Worker } from "../../src/worker/worker.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { alwaysFails, flaky, longRunning, recordRun, strict } from "../fixtures/worker-jobs.ts";

const JOBS_MODULE = fileURLToPath(new URL("../fixtures/worker-jobs.ts", import.meta.url));
const jobs = [recordRun, flaky, alwaysFails, strict, longRunning];

let db: TestDatabase;
let bus: Pgbus;

before(async () => {
  db = await createTestDatabase("worker");
  process.env.PGBUS_TEST_DB_URL = db.url;
  bus = new Pgbus({ connectionString: db.url, jobs });
  await bus.migrate();
  await db.pool.query("CREATE TABLE test_runs (msg_id bigint, attempt int, note text, pid int, at timestamptz DEFAULT clock_timestamp())");
});
after(async () => {
  await bus.close();
  await db.drop();
});
beforeEach(async () => {
  await db.pool.query("TRUNCATE test_runs, pgbus.failed_jobs, pgmq.a_work");
  await bus.queues.purgeQueue("work");
  await bus.queues.purgeQueue("work_dlq");
});

const rows = async (text: string, values: unknown[] = []) => (await db.pool.query(text, values)).rows;

/** Resolves when `predicate` holds, checking after each job event and every 50 ms. */
async function until(predicate: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const runCount = async () => Number((await rows("SELECT count(*) AS n FROM test_runs"))[0].n);

for (const executionMode of ["async", "threads"] as const) {
  describe(`worker in ${executionMode} mode`, () => {
    let worker: Worker;
    const start = async (extra: Partial<Parameters<Pgbus["worker"]>[0]> = {}) => {
      worker = bus.worker({ queues: ["work"], capacity: 10, executionMode, jobsModule: JOBS_MODULE, pollIntervalMs: 200, ...extra });
      await worker.start();
      return worker;
    };
    afterEach(() => worker?.stop());

    test("runs enqueued jobs once each and archives them", async () => {
      await start();
      await bus.enqueueMany(
        recordRun,
        Array.from({ length: 50 }, (_, i) => ({ note: `n${i}` })),
      );
      await until(async () => (await runCount()) === 50);
      await until(async () => Number((await rows("SELECT count(*) AS n FROM pgmq.a_work"))[0].n) >= 50);
      assert.equal(Number((await rows("SELECT count(DISTINCT msg_id) AS n FROM test_runs"))[0].n), 50);
      assert.equal((await bus.queues.metrics("work")).queueLength, 0);
      await worker.stop();
      const stats = worker.stats();
      assert.equal(stats.processed, 50);
      assert.equal(stats.executionMode, executionMode);
    });

    test("a failing job is retried with backoff and succeeds; failures are recorded", async () => {
      await start();
      const id = await bus.enqueue(flaky, { succeedOnAttempt: 3 });
      await until(async () => (await rows("SELECT 1 FROM pgmq.a_work WHERE msg_id = $1", [id])).length === 1);
      const runs = await rows("SELECT attempt, at FROM test_runs ORDER BY at");
      assert.deepEqual(
        runs.map((r) => r.attempt),
        [1, 2, 3],
      );
      assert.ok(runs[1].at - runs[0].at >= 45, "second run waited for the backoff");
      const failures = await rows(
        "SELECT attempt, outcome, error->>'message' AS message FROM pgbus.failed_jobs WHERE msg_id = $1 ORDER BY attempt",
        [id],
      );
      assert.deepEqual(
        failures.map((f) => [f.attempt, f.outcome]),
        [
          [1, "retried"],
          [2, "retried"],
        ],
      );
      assert.match(failures[0].message, /flaky failure on attempt 1/);
      await worker.stop();
      assert.equal(worker.stats().retried, 2);
    });

    test("after maxRetries the message moves to the DLQ with the last error", async () => {
      await start();
      const dead = new Promise<WorkerEvents["job:dead"]>((resolve) => {
        const off = bus.on("job:dead", (e) => {
          off();
          resolve(e);
        });
      });
      const id = await bus.enqueue(alwaysFails, {});
      const event = await dead;
      assert.equal(event.messageId, id);
      assert.equal(event.reason, "retries_exhausted");
      assert.equal(event.attempt, 3);
      const [dlq] = await bus.queues.read("work_dlq", 30, 1);
      assert.deepEqual(dlq?.message, { job: "always_fails", payload: {} });
      assert.equal((dlq?.headers?.pgbus_error as { message: string }).message, "nope, never");
      assert.equal((await bus.queues.metrics("work")).queueLength, 0);
      const outcomes = await rows("SELECT outcome FROM pgbus.failed_jobs WHERE msg_id = $1 ORDER BY attempt", [id]);
      assert.deepEqual(
        outcomes.map((o) => o.outcome),
        ["retried", "retried", "dead"],
      );
    });

    test("unknown jobs, invalid payloads and non-job messages go to the DLQ at once, with the reason", async () => {
      await start();
      const reasons: string[] = [];
      const off = bus.on("job:dead", (e) => void reasons.push(e.reason));
      await bus.queues.send("work", { job: "no_such_job", payload: {} });
      await bus.queues.send("work", { job: "strict", payload: { n: "not a number" } });
      await bus.queues.send("work", "just a string, not a job");
      await until(async () => (await bus.queues.metrics("work_dlq")).queueLength === 3);
      off();
      assert.deepEqual(reasons.sort(), ["invalid_message", "invalid_payload", "unknown_job"]);
      const errors = (await bus.queues.read("work_dlq", 30, 10)).map((m) => (m.headers?.pgbus_error as { message: string }).message);
      assert.ok(errors.some((e) => /no job named "no_such_job"/.test(e)));
      assert.ok(errors.some((e) => /n: n must be a number/.test(e)));
      assert.ok(errors.some((e) => /not a pgbus job/.test(e)));
      assert.equal(Number((await rows("SELECT count(*) AS n FROM pgbus.failed_jobs WHERE outcome = 'retried'"))[0].n), 0);
    });

    test("VT extension keeps a job three VTs long from running twice", async () => {
      const first = await start({ visibilityTimeoutSec: 1 });
      const second = bus.worker({
        queues: ["work"],
        capacity: 10,
        executionMode,
        jobsModule: JOBS_MODULE,
        pollIntervalMs: 100,
        visibilityTimeoutSec: 1,
      });
      await second.start();
      try {
        const id = await bus.enqueue(longRunning, { ms: 3_000 });
        await until(async () => (await rows("SELECT 1 FROM pgmq.a_work WHERE msg_id = $1", [id])).length === 1);
        assert.deepEqual(
          (await rows("SELECT note FROM test_runs")).map((r) => r.note),
          ["long"],
        );
      } finally {
        await second.stop();
        await first.stop();
      }
    });

    test("graceful stop waits for all in-flight jobs and loses nothing", async () => {
      await start({ capacity: 20 });
      await bus.enqueueMany(
        recordRun,
        Array.from({ length: 100 }, (_, i) => ({ note: `g${i}`, sleepMs: 100 })),
      );
      await until(async () => (await runCount()) >= 10);
      await worker.stop();
      const done = await runCount();
      const archived = Number((await rows("SELECT count(*) AS n FROM pgmq.a_work"))[0].n);
      const left = (await bus.queues.metrics("work")).queueLength;
      assert.equal(archived + left, 100, "every message is either archived or still queued");
      assert.equal(archived, done, "every run that finished was acked before stop resolved");
      assert.equal(worker.stats().processed, done);
      await start({ capacity: 20 });
      await until(async () => (await runCount()) === 100);
      assert.equal(Number((await rows("SELECT count(DISTINCT msg_id) AS n FROM test_runs"))[0].n), 100);
    });

    test("past the shutdown timeout, in-flight jobs are aborted through ctx.signal and released at once", async () => {
      await start({ shutdownTimeoutMs: 300 });
      const id = await bus.enqueue(longRunning, { ms: 60_000 });
      await until(async () => worker.stats().busy === 1);
      await worker.stop();
      const [message] = await bus.queues.read("work", 30, 1);
      assert.equal(message?.msgId, id, "released for redelivery without waiting for the VT");
      assert.equal((await rows("SELECT count(*)::int AS n FROM pgbus.failed_jobs"))[0].n, 0, "an abort at shutdown is not a failure");
    });
  });
}

describe("worker events and wake-up", () => {
  test("a job enqueued into an idle worker starts at once (NOTIFY), long before the poll", async () => {
    const worker = bus.worker({ queues: ["work"], capacity: 5, pollIntervalMs: 60_000 });
    await worker.start();
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      const started = new Promise<number>((resolve) => {
        const off = bus.on("job:start", () => {
          off();
          resolve(Date.now());
        });
      });
      const sentAt = Date.now();
      await bus.enqueue(recordRun, { note: "wake" });
      assert.ok((await started) - sentAt < 5_000);
      await until(async () => (await runCount()) === 1);
    } finally {
      await worker.stop();
    }
  });

  test("a throwing event listener does not break the worker", async () => {
    const off = bus.on("job:start", () => {
      throw new Error("listener bug");
    });
    const worker = bus.worker({ queues: ["work"], capacity: 5, pollIntervalMs: 100 });
    await worker.start();
    try {
      await bus.enqueueMany(recordRun, [{ note: "a" }, { note: "b" }]);
      await until(async () => (await runCount()) === 2);
    } finally {
      off();
      await worker.stop();
    }
  });

  test("enqueue inside the caller's transaction: rollback enqueues nothing", async () => {
    const client = await db.pool.connect();
    try {
      await client.query("BEGIN");
      await bus.enqueue(recordRun, { note: "never" }, { client });
      await client.query("ROLLBACK");
    } finally {
      client.release();
    }
    assert.equal((await bus.queues.metrics("work")).queueLength, 0);
  });

  test("enqueue rejects a payload that fails the job's schema, naming the problem", async () => {
    await assert.rejects(
      () => bus.enqueue(strict, { n: "x" } as unknown as { n: number }),
      /payload 0 of job strict is invalid: n must be a number/,
    );
  });
});
