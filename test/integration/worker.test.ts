import assert from "node:assert/strict";
import { after, afterEach, before, beforeEach, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Pgbus } from "../../src/bus.ts";
import type { WorkerEvents } from "../../src/observability/events.ts";
import type { Worker } from "../../src/worker/worker.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { setEnv } from "../helpers/env.ts";
import { alwaysFails, backoffProbe, closeFixturePool, flaky, jittered, longRunning, recordRun, strict } from "../fixtures/worker-jobs.ts";

const JOBS_MODULE = fileURLToPath(new URL("../fixtures/worker-jobs.ts", import.meta.url));
const jobs = [recordRun, flaky, alwaysFails, strict, longRunning, backoffProbe, jittered];

let db: TestDatabase;
let bus: Pgbus;
let restoreEnv = () => {};

before(async () => {
  db = await createTestDatabase("worker");
  // Read by the job fixtures, in this thread and in the worker threads; restored after.
  restoreEnv = setEnv("PGBUS_TEST_DB_URL", db.url);
  bus = new Pgbus({ connectionString: db.url, jobs });
  await bus.migrate();
  await db.pool.query("CREATE TABLE test_runs (msg_id bigint, attempt int, note text, pid int, at timestamptz DEFAULT clock_timestamp())");
});
after(async () => {
  await bus.close();
  await closeFixturePool();
  restoreEnv();
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
      assert.ok(runs[1].at - runs[0].at >= 50, "second run waited for the backoff");
      assert.ok(runs[2].at - runs[1].at >= 100, "third run waited for the doubled backoff");
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

    test("retries wait for the backoff: doubling from baseMs, capped at maxMs", async () => {
      // A quick poll, so a retry made visible too early would run too early.
      await start({ pollIntervalMs: 20 });
      const failures: Array<WorkerEvents["job:failure"]> = [];
      const off = bus.on("job:failure", (e) => void failures.push(e));
      try {
        const id = await bus.enqueue(backoffProbe, {});
        await until(async () => (await bus.queues.metrics("work_dlq")).queueLength === 1);
        // 400 ms, then 800 ms capped at 600 ms, then retries are exhausted.
        assert.deepEqual(
          failures.map((f) => [f.attempt, f.retryInMs]),
          [
            [1, 400],
            [2, 600],
            [3, null],
          ],
        );
        const runs = await rows("SELECT attempt, at FROM test_runs WHERE msg_id = $1 ORDER BY at", [id]);
        assert.deepEqual(
          runs.map((r) => r.attempt),
          [1, 2, 3],
        );
        assert.ok(
          runs[1].at - runs[0].at >= 400,
          `second run ${runs[1].at - runs[0].at} ms after the first: waited for the 400 ms backoff`,
        );
        assert.ok(runs[2].at - runs[1].at >= 600, `third run ${runs[2].at - runs[1].at} ms after the second: waited for the 600 ms cap`);
      } finally {
        off();
      }
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
      let id: string;
      try {
        id = await bus.enqueue(longRunning, { ms: 3_000 });
        await until(async () => (await rows("SELECT 1 FROM pgmq.a_work WHERE msg_id = $1", [id])).length === 1);
      } finally {
        // A second run, had the VT lapsed, would still be going on: stop waits for it.
        await second.stop();
        await first.stop();
      }
      assert.deepEqual(
        (await rows("SELECT note FROM test_runs")).map((r) => r.note),
        ["long"],
        "the handler ran once",
      );
      assert.deepEqual(
        (await rows("SELECT read_ct FROM pgmq.a_work WHERE msg_id = $1", [id])).map((r) => r.read_ct),
        [1],
        "the message was claimed once",
      );
    });

    test("graceful stop waits for all in-flight jobs and loses nothing", async () => {
      await start({ capacity: 20 });
      // Counting from before the enqueue: a job may start before enqueueMany's caller resumes.
      let started = 0;
      let succeeded = 0;
      const offStart = bus.on("job:start", () => void started++);
      const offSuccess = bus.on("job:success", () => void succeeded++);
      await bus.enqueueMany(
        recordRun,
        Array.from({ length: 100 }, (_, i) => ({ note: `g${i}`, sleepMs: 100 })),
      );
      await until(async () => (await runCount()) >= 10);
      try {
        await worker.stop();
        assert.ok(started > 0);
        assert.equal(succeeded, started, "stop resolved only after every job it had started finished");
      } finally {
        offStart();
        offSuccess();
      }
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
  test("a job enqueued into an idle worker starts on NOTIFY, not on the (ten-minute) poll", async () => {
    const worker = bus.worker({ queues: ["work"], capacity: 5, pollIntervalMs: 600_000 });
    await worker.start();
    try {
      // A first job, so the claims the worker makes as it starts are over: once it is acked,
      // the claim that found it has returned and the worker sleeps until woken.
      await bus.enqueue(recordRun, { note: "first" });
      await until(async () => Number((await rows("SELECT count(*) AS n FROM pgmq.a_work"))[0].n) === 1);
      await bus.enqueue(recordRun, { note: "wake" });
      // Far less than the poll interval: only the notification can have woken the worker.
      await until(async () => (await runCount()) === 2, 30_000);
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
      /payload of job strict is invalid: (n: )?n must be a number/,
    );
  });
});

/** Collects every event of the given names, in order, until `off()`. */
function collect<K extends keyof WorkerEvents>(names: readonly K[]): { events: Array<[K, WorkerEvents[K]]>; off: () => void } {
  const events: Array<[K, WorkerEvents[K]]> = [];
  const offs = names.map((name) => bus.on(name, (payload) => void events.push([name, payload])));
  return { events, off: () => offs.forEach((off) => off()) };
}

const count = async (text: string, values: unknown[] = []) => Number((await rows(text, values))[0].n);

describe("backoff jitter through a real worker", () => {
  test("retries of a burst are spread by the jitter, and each message's VT is pushed out by its own delay", async () => {
    const worker = bus.worker({ queues: ["work"], capacity: 20, pollIntervalMs: 100 });
    const { events, off } = collect(["job:failure"]);
    await worker.start();
    try {
      await bus.enqueueMany(
        jittered,
        Array.from({ length: 20 }, (_, n) => ({ n })),
      );
      await until(async () => (await count("SELECT count(*) AS n FROM pgbus.failed_jobs WHERE job = 'jittered'")) === 20);
    } finally {
      await worker.stop();
      off();
    }
    const delays = new Map(events.map(([, e]) => [e.messageId, e.retryInMs!]));
    assert.equal(delays.size, 20);
    for (const delay of delays.values()) assert.ok(delay >= 5_000 && delay <= 15_000, `${delay} ms is within 10 s ± 50%`);
    assert.ok(new Set(delays.values()).size > 10, `the delays differ: ${[...delays.values()].join(", ")}`);
    // The retry statement sets vt = clock_timestamp() + delay in the transaction that records
    // the failure (failed_at = now()): the difference is at least that message's own delay.
    const stored = await rows(
      `SELECT q.msg_id::text AS id, extract(epoch FROM q.vt - f.failed_at) * 1000 AS ms
         FROM pgmq.q_work q JOIN pgbus.failed_jobs f ON f.msg_id = q.msg_id AND f.queue_name = 'work'`,
    );
    assert.equal(stored.length, 20);
    for (const { id, ms } of stored) {
      const delay = delays.get(id)!;
      assert.ok(Number(ms) >= delay, `message ${id}: VT ${ms} ms after the failure, delay ${delay} ms`);
    }
  });
});

describe("typed events through a real worker", () => {
  test("worker:start, job:start, job:success, job:failure with retryInMs, job:dead and worker:stop, with their payloads", async () => {
    const { events, off } = collect(["worker:start", "worker:stop", "job:start", "job:success", "job:failure", "job:dead"]);
    const worker = bus.worker({ queues: ["work"], capacity: 3, pollIntervalMs: 50 });
    let okId = "";
    let failId = "";
    try {
      await worker.start();
      okId = await bus.enqueue(recordRun, { note: "ok" });
      failId = await bus.enqueue(alwaysFails, {});
      await until(async () => events.some(([name]) => name === "job:dead") && events.some(([name]) => name === "job:success"));
    } finally {
      await worker.stop();
      off();
    }
    const of = <K extends keyof WorkerEvents>(name: K) => events.filter(([n]) => n === name).map(([, e]) => e as WorkerEvents[K]);
    assert.deepEqual(of("worker:start"), [{ workerId: worker.id, queues: ["work"], capacity: 3, executionMode: "async" }]);
    assert.deepEqual(of("worker:stop"), [{ workerId: worker.id, graceful: true, abandoned: 0 }]);
    assert.equal(events[0]![0], "worker:start");
    assert.equal(events.at(-1)![0], "worker:stop");
    const [success] = of("job:success");
    assert.equal(of("job:success").length, 1);
    assert.deepEqual({ ...success, durationMs: 0 }, { queue: "work", messageId: okId, job: "record_run", attempt: 1, durationMs: 0 });
    assert.ok(success!.durationMs >= 0);
    const failures = of("job:failure");
    assert.deepEqual(
      failures.map((f) => [f.job, f.attempt, f.retryInMs, f.error.message]),
      [
        ["always_fails", 1, 20, "nope, never"],
        ["always_fails", 2, 40, "nope, never"],
        ["always_fails", 3, null, "nope, never"],
      ],
    );
    assert.deepEqual(new Set(failures.map((f) => f.messageId)), new Set([failId]));
    const [dead] = of("job:dead");
    assert.equal(dead!.reason, "retries_exhausted");
    assert.equal(dead!.messageId, failures[0]!.messageId);
    assert.equal(of("job:start").length, 4, "one start per run: one success, three failed attempts");
  });
});

describe("ack modes through a real worker", () => {
  beforeEach(async () => {
    await bus.queues.createQueue("acks_other");
    await bus.queues.purgeQueue("acks_other");
    await db.pool.query("TRUNCATE pgmq.a_acks_other");
  });

  test('ackMode "delete" removes a succeeded message without archiving it', async () => {
    const worker = bus.worker({ queues: ["work"], capacity: 5, pollIntervalMs: 50, ackMode: "delete" });
    await worker.start();
    try {
      await bus.enqueueMany(recordRun, [{ note: "d1" }, { note: "d2" }, { note: "d3" }]);
      await until(async () => (await runCount()) === 3 && (await bus.queues.metrics("work")).queueLength === 0);
    } finally {
      await worker.stop();
    }
    assert.equal(await count("SELECT count(*) AS n FROM pgmq.a_work"), 0);
  });

  test("a per-queue ackMode deletes on one queue and archives on another", async () => {
    const worker = bus.worker({
      queues: ["work", "acks_other"],
      capacity: 5,
      pollIntervalMs: 50,
      ackMode: (queue) => (queue === "work" ? "delete" : "archive"),
    });
    await worker.start();
    try {
      await bus.enqueueMany(recordRun, [{ note: "w1" }, { note: "w2" }]);
      await bus.queues.sendBatch("acks_other", [
        { job: "record_run", payload: { note: "o1" } },
        { job: "record_run", payload: { note: "o2" } },
      ]);
      await until(
        async () =>
          (await runCount()) === 4 &&
          (await bus.queues.metrics("work")).queueLength === 0 &&
          (await bus.queues.metrics("acks_other")).queueLength === 0,
      );
    } finally {
      await worker.stop();
    }
    assert.equal(await count("SELECT count(*) AS n FROM pgmq.a_work"), 0, "work: deleted");
    assert.equal(await count("SELECT count(*) AS n FROM pgmq.a_acks_other"), 2, "acks_other: archived");
  });
});

describe("which queues a worker claims from", () => {
  test("queues are claimed in the order given: the first queue drains before the next is read", async () => {
    await bus.queues.createQueue("prio_high");
    await bus.queues.createQueue("prio_low");
    // The low-priority messages are older, so only the queue order can put the others first.
    await bus.queues.sendBatch(
      "prio_low",
      [1, 2, 3].map((n) => ({ job: "record_run", payload: { note: `low${n}` } })),
    );
    await bus.queues.sendBatch(
      "prio_high",
      [1, 2, 3].map((n) => ({ job: "record_run", payload: { note: `high${n}` } })),
    );
    const worker = bus.worker({ queues: ["prio_high", "prio_low"], capacity: 1, prefetch: 0, pollIntervalMs: 50 });
    await worker.start();
    try {
      await until(async () => (await runCount()) === 6);
    } finally {
      await worker.stop();
    }
    assert.deepEqual(
      (await rows("SELECT note FROM test_runs ORDER BY at")).map((r) => r.note),
      ["high1", "high2", "high3", "low1", "low2", "low3"],
    );
  });

  test('["*"] picks up a queue created after the worker started, and not the DLQs', async () => {
    const worker = bus.worker({ queues: ["*"], capacity: 5, pollIntervalMs: 50 });
    await worker.start();
    try {
      assert.ok(!worker.queues.includes("wild_new"));
      assert.ok(!worker.queues.some((queue) => queue.endsWith("_dlq")), `no DLQ among ${worker.queues.join(", ")}`);
      await bus.queues.createQueue("wild_new");
      await bus.queues.send("wild_new", { job: "record_run", payload: { note: "wild" } });
      await until(async () => (await runCount()) === 1);
      assert.ok(worker.queues.includes("wild_new"));
      assert.ok(!worker.queues.includes("wild_new_dlq"));
      await until(async () => (await count("SELECT count(*) AS n FROM pgmq.a_wild_new")) === 1);
    } finally {
      await worker.stop();
      await bus.queues.dropQueue("wild_new");
    }
  });

  test("a queue dropped under a worker is reported, skipped, and claimed from again once it is back", async () => {
    await bus.queues.createQueue("dropped_q");
    const { events, off } = collect(["worker:error"]);
    const worker = bus.worker({ queues: ["dropped_q", "work"], capacity: 5, pollIntervalMs: 50 });
    await worker.start();
    try {
      await bus.queues.dropQueue("dropped_q");
      await until(async () => events.length > 0);
      assert.match(events[0]![1].context, /queue dropped_q no longer exists/);
      // The other queue is still served meanwhile.
      await bus.enqueue(recordRun, { note: "still served" });
      await until(async () => (await runCount()) === 1);
      await bus.queues.createQueue("dropped_q");
      await bus.queues.send("dropped_q", { job: "record_run", payload: { note: "back" } });
      await until(async () => (await runCount()) === 2, 20_000);
      assert.equal(events.length, 1, "reported once, not once per claim");
      assert.deepEqual(
        (await rows("SELECT note FROM test_runs ORDER BY at")).map((r) => r.note),
        ["still served", "back"],
      );
    } finally {
      off();
      await worker.stop();
      await bus.queues.dropQueue("dropped_q");
    }
  });
});

describe("prefetch through a real worker", () => {
  const invisible = () => count("SELECT count(*) AS n FROM pgmq.q_work WHERE vt > clock_timestamp()");

  test("a worker holds at most capacity + prefetch messages, and releases the prefetched ones at stop", async () => {
    const worker = bus.worker({
      queues: ["work"],
      capacity: 2,
      prefetch: 3,
      pollIntervalMs: 20,
      visibilityTimeoutSec: 30,
      shutdownTimeoutMs: 200,
    });
    await worker.start();
    try {
      await bus.enqueueMany(
        longRunning,
        Array.from({ length: 10 }, () => ({ ms: 60_000 })),
      );
      await until(async () => worker.stats().busy === 2 && (await invisible()) === 5);
      // Many poll intervals later it still holds no more: not an event awaited, the lack of one.
      for (let i = 0; i < 10; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        assert.equal(await invisible(), 5, "claimed: 2 running + 3 prefetched");
      }
    } finally {
      await worker.stop();
    }
    // The 2 aborted runs and the 3 prefetched messages are visible again at once, not after the 30 s VT.
    assert.equal(await invisible(), 0);
    assert.equal((await bus.queues.metrics("work")).visibleLength, 10);
    assert.equal(await count("SELECT count(*) AS n FROM test_runs WHERE note = 'long'"), 0);
  });

  test("the VT of prefetched messages is extended while they wait: a second worker does not take them", async () => {
    // The prefetched message waits 3 s for the first to finish: 1.5 VTs, so without extension
    // the second worker would take it.
    const first = bus.worker({ queues: ["work"], capacity: 1, prefetch: 1, pollIntervalMs: 50, visibilityTimeoutSec: 2 });
    const second = bus.worker({ queues: ["work"], capacity: 2, prefetch: 0, pollIntervalMs: 50, visibilityTimeoutSec: 2 });
    await first.start();
    try {
      const ids = await bus.enqueueMany(longRunning, [{ ms: 3_000 }, { ms: 3_000 }]);
      await until(async () => first.stats().busy === 1 && (await invisible()) === 2);
      await second.start();
      await until(async () => (await count("SELECT count(*) AS n FROM pgmq.a_work")) === 2, 20_000);
      await second.stop();
      await first.stop();
      assert.deepEqual(
        (await rows("SELECT msg_id::text AS id, read_ct FROM pgmq.a_work ORDER BY msg_id")).map((r) => [r.id, r.read_ct]),
        ids.map((id) => [id, 1]),
        "each message claimed once",
      );
      assert.equal(await runCount(), 2, "each message ran once");
      assert.equal(second.stats().processed, 0, "the second worker took neither");
    } finally {
      await second.stop();
      await first.stop();
    }
  });
});
