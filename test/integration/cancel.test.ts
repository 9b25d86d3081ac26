import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Pgbus } from "../../src/bus.ts";
import { PgbusError, ValidationError } from "../../src/errors.ts";
import { defineJob } from "../../src/jobs/define.ts";
import type { NotificationSource } from "../../src/worker/notifications.ts";
import type { WorkerOptions } from "../../src/worker/worker.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { CANCEL_EVENTS_TABLE, closeCancelFixturePool, failsAfter, failsThenWaits, quick, waitForAbort } from "../fixtures/cancel-jobs.ts";

const JOBS_MODULE = fileURLToPath(new URL("../fixtures/cancel-jobs.ts", import.meta.url));

/**
 * bus.cancel in one process, against real PostgreSQL: waiting, delayed, running (async and
 * threads), waiting out a retry, with the notification lost, and racing the worker's ack.
 */
describe("cancellation", () => {
  let db: TestDatabase;
  let bus: Pgbus;
  const rows = async <R = Record<string, unknown>>(text: string, values: unknown[] = []) => (await db.pool.query(text, values)).rows as R[];
  const events = async (id: string, queue = "cancels") =>
    (await rows<{ event: string }>("SELECT event FROM cancel_events WHERE queue = $2 AND msg_id = $1 ORDER BY event", [id, queue])).map(
      (row) => row.event,
    );
  const archived = async (id: string) =>
    (await rows<{ headers: Record<string, unknown> | null }>("SELECT headers FROM pgmq.a_cancels WHERE msg_id = $1", [id]))[0];
  const inQueue = async (id: string) => (await rows("SELECT 1 FROM pgmq.q_cancels WHERE msg_id = $1", [id])).length > 0;
  const waitCancelledArchive = (id: string) =>
    waitFor(
      async () => ((await archived(id))?.headers?.["pgbus_cancelled_at"] ? await archived(id) : null),
      `message ${id} archived as cancelled`,
    );

  before(async () => {
    db = await createTestDatabase("cancel");
    process.env["PGBUS_TEST_DB_URL"] = db.url;
    bus = new Pgbus({ connectionString: db.url, jobs: [waitForAbort, failsThenWaits, failsAfter, quick] });
    await bus.migrate();
    await db.pool.query(CANCEL_EVENTS_TABLE);
  });
  after(async () => {
    await bus.close();
    await closeCancelFixturePool();
    await db.drop();
  });

  const worker = async (options: Partial<WorkerOptions> = {}, target: Pgbus = bus) => {
    const started = target.worker({ queues: ["cancels"], capacity: 4, pollIntervalMs: 100, ackMode: "archive", ...options });
    await started.start();
    return started;
  };

  test("a waiting job is archived as cancelled with who and when, and its unique key is released", async () => {
    const id = await bus.enqueue(quick, { ms: 0 }, { uniqueKey: "only-one" });
    assert.deepEqual(await bus.cancel("cancels", id, { by: "ops@test" }), { status: "cancelled" });
    assert.equal(await inQueue(id), false);
    const row = await archived(id);
    assert.equal(row?.headers?.["pgbus_cancelled_by"], "ops@test");
    assert.ok(Math.abs(Date.parse(String(row?.headers?.["pgbus_cancelled_at"])) - Date.now()) < 60_000);
    const again = await bus.enqueue(quick, { ms: 0 }, { uniqueKey: "only-one" });
    assert.notEqual(again, id, "the cancelled job's unique key no longer blocks");
    assert.deepEqual(await bus.cancel("cancels", again), { status: "cancelled" });
    assert.equal((await archived(again))?.headers?.["pgbus_cancelled_by"], null);
    // A second cancel of a cancelled job says so again.
    assert.deepEqual(await bus.cancel("cancels", id), { status: "cancelled" });
  });

  test("a delayed job is archived as cancelled and never runs", async () => {
    const id = await bus.enqueue(quick, { ms: 0 }, { delayMs: 60_000 });
    assert.deepEqual(await bus.cancel("cancels", BigInt(id)), { status: "cancelled" });
    assert.equal(await inQueue(id), false);
    assert.ok((await archived(id))?.headers?.["pgbus_cancelled_at"]);
  });

  for (const executionMode of ["async", "threads"] as const) {
    for (const then of ["throw", "return"] as const) {
      test(`a running job (${executionMode} mode, handler ${then}s on abort) sees its signal aborted, is archived as cancelled, never retried`, async () => {
        const running = await worker(executionMode === "threads" ? { executionMode, jobsModule: JOBS_MODULE, threads: 1 } : {});
        try {
          const cancelled: string[] = [];
          const off = bus.on("job:cancelled", (ref) => void cancelled.push(ref.messageId));
          const id = await bus.enqueue(waitForAbort, { then });
          await waitFor(async () => (await events(id)).includes("started:1"), "the run to start");
          assert.deepEqual(await bus.cancel("cancels", id, { by: "test" }), { status: "cancelling" });
          const row = await waitCancelledArchive(id);
          assert.equal(row.headers?.["pgbus_cancelled_by"], "test");
          assert.equal(row.headers?.["pgbus_cancel_requested"], undefined, "the request became the cancelled headers");
          assert.deepEqual(await events(id), ["aborted:AbortError", "started:1"]);
          assert.equal(await inQueue(id), false);
          assert.deepEqual(await rows("SELECT 1 FROM pgbus.failed_jobs WHERE msg_id = $1 AND queue_name = 'cancels'", [id]), []);
          assert.deepEqual(cancelled, [id]);
          assert.equal(running.stats().cancelled, 1);
          off();
        } finally {
          await running.stop();
        }
      });
    }
  }

  /** A bus whose workers never get a notification (wake-ups or cancels): only the poll and the database checks remain. */
  const deafBus = () =>
    new Pgbus({
      connectionString: db.url,
      jobs: [waitForAbort, failsThenWaits, failsAfter],
      notifications: (handlers): NotificationSource => ({ start: async () => handlers.onConnected(), stop: async () => {} }),
    });

  test("a job waiting out a retry's backoff is cancelled by the claim that brings it back, without running again", async () => {
    const deaf = deafBus();
    const running = await worker({}, deaf);
    try {
      const id = await bus.enqueue(failsThenWaits, {});
      await waitFor(
        async () => (await rows("SELECT 1 FROM pgbus.failed_jobs WHERE msg_id = $1 AND queue_name = 'cancels'", [id])).length > 0,
        "the first failure",
      );
      assert.deepEqual(await bus.cancel("cancels", id), { status: "cancelling" });
      await waitCancelledArchive(id);
      assert.deepEqual(await events(id), ["started:1"]);
    } finally {
      await running.stop();
      await deaf.close();
    }
  });

  test("a run that fails after a cancel its worker never heard of is cancelled, not retried (the settler checks first)", async () => {
    const deaf = deafBus();
    // A 30 s VT: the in-flight check comes only every 5 s, after the run has failed.
    const running = await worker({ visibilityTimeoutSec: 30 }, deaf);
    const failures: string[] = [];
    const off = deaf.on("job:failure", (ref) => void failures.push(ref.messageId));
    try {
      const id = await bus.enqueue(failsAfter, { ms: 1_000 });
      await waitFor(async () => (await events(id)).includes("started:1"), "the run to start");
      assert.deepEqual(await bus.cancel("cancels", id), { status: "cancelling" });
      await waitCancelledArchive(id);
      assert.deepEqual(await rows("SELECT 1 FROM pgbus.failed_jobs WHERE msg_id = $1 AND queue_name = 'cancels'", [id]), []);
      assert.deepEqual(failures, []);
      assert.deepEqual(await events(id), ["started:1"]);
    } finally {
      off();
      await running.stop();
      await deaf.close();
    }
  });

  test("a cancel whose notification is lost still aborts the run (the worker's check of its in-flight messages)", async () => {
    const deaf = deafBus();
    const running = await worker({ visibilityTimeoutSec: 3 }, deaf);
    try {
      const id = await deaf.enqueue(waitForAbort, { then: "return" });
      await waitFor(async () => (await events(id)).includes("started:1"), "the run to start");
      assert.deepEqual(await bus.cancel("cancels", id), { status: "cancelling" });
      await waitCancelledArchive(id);
      assert.deepEqual(await events(id), ["aborted:AbortError", "started:1"]);
    } finally {
      await running.stop();
      await deaf.close();
    }
  });

  test("cancels racing the worker's acks: every job ends exactly once, as the cancel's answer says", async () => {
    const running = await worker({ capacity: 20 });
    try {
      const ids = await bus.enqueueMany(
        quick,
        Array.from({ length: 60 }, (_, index) => ({ ms: index % 7 })),
      );
      const results = await Promise.all(
        ids.map(async (id, index) => {
          await new Promise((resolve) => setTimeout(resolve, index % 13));
          return { id, status: (await bus.cancel("cancels", id)).status };
        }),
      );
      await waitFor(async () => (await rows("SELECT 1 FROM pgmq.q_cancels")).length === 0, "the queue to empty");
      for (const { id, status } of results) {
        const row = await archived(id);
        assert.ok(row, `message ${id} (${status}) is in the archive exactly once`);
        const cancelled = row.headers?.["pgbus_cancelled_at"] !== undefined;
        const runs = (await events(id)).length;
        assert.ok(runs <= 1, `message ${id} ran ${runs} times`);
        if (status === "cancelled") assert.ok(cancelled && runs === 0, `message ${id}: cancelled means archived as cancelled, unrun`);
        if (status === "already_finished") assert.ok(!cancelled && runs === 1, `message ${id}: finished means a success`);
        if (status === "cancelling") assert.ok(cancelled || runs === 1, `message ${id}: cancelled, or a success that came first`);
      }
      assert.equal((await rows("SELECT count(*)::int AS n FROM pgmq.a_cancels WHERE msg_id = ANY($1)", [ids]))[0]!["n"], ids.length);
    } finally {
      await running.stop();
    }
  });

  test("unlogged and partitioned queues: waiting and running jobs are cancelled; unique keys work on both", async (t) => {
    const partman = (await rows("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_partman'")).length > 0;
    if (partman) await db.pool.query("CREATE EXTENSION IF NOT EXISTS pg_partman");
    const kinds = partman ? (["unlogged", "partitioned"] as const) : (["unlogged"] as const);
    if (!partman) t.diagnostic("pg_partman is not installed: partitioned queues not tested");
    for (const kind of kinds) {
      const queue = `cancels_${kind}`;
      await bus.queues.createQueue(queue, kind === "unlogged" ? { unlogged: true } : { partitioned: { interval: 100, retention: 1_000 } });
      const job = defineJob({ name: `wait_${kind}`, queue, perform: waitForAbort.perform });
      const delayed = await bus.enqueue(job, { then: "return" }, { delayMs: 60_000 });
      assert.deepEqual(await bus.cancel(queue, delayed), { status: "cancelled" });
      const running = await worker({ queues: [queue] });
      try {
        const id = await bus.enqueue(job, { then: "return" });
        await waitFor(async () => (await events(id, queue)).includes("started:1"), `the run on the ${kind} queue`);
        assert.deepEqual(await bus.cancel(queue, id), { status: "cancelling" });
        await waitFor(
          async () => (await rows(`SELECT 1 FROM pgmq.a_${queue} WHERE msg_id = $1 AND headers ? 'pgbus_cancelled_at'`, [id])).length > 0,
          `message ${id} of the ${kind} queue archived as cancelled`,
        );
      } finally {
        await running.stop();
      }
      const unique = bus.enqueue(job, { then: "return" }, { uniqueKey: "k", uniqueFor: "queued", delayMs: 60_000 });
      assert.equal(await bus.enqueue(job, { then: "return" }, { uniqueKey: "k", uniqueFor: "queued" }), await unique);
    }
  });

  test("an unknown id is not_found, a finished one already_finished; an unknown queue and a bad id are typed errors", async () => {
    assert.deepEqual(await bus.cancel("cancels", "999999999"), { status: "not_found" });
    const running = await worker();
    let id: string;
    try {
      id = await bus.enqueue(quick, { ms: 0 });
      await waitFor(async () => (await archived(id)) !== undefined, "the job to finish");
    } finally {
      await running.stop();
    }
    assert.deepEqual(await bus.cancel("cancels", id), { status: "already_finished" });
    await assert.rejects(bus.cancel("no_such_queue", "1"), (error: unknown) => {
      assert.ok(error instanceof PgbusError && error.code === "QUEUE_NOT_FOUND");
      assert.match(error.message, /no_such_queue/);
      return true;
    });
    for (const bad of ["abc", "-1", "", 1.5]) {
      await assert.rejects(
        bus.cancel("cancels", bad as string),
        (error: unknown) => error instanceof ValidationError && /message id/.test(error.message),
      );
    }
    await assert.rejects(bus.cancel("cancels", "1", { by: "" }), ValidationError);
    await assert.rejects(
      bus.cancel("Bad-Queue", "1"),
      (error: unknown) => error instanceof ValidationError && error.code === "INVALID_QUEUE_NAME",
    );
  });
});
