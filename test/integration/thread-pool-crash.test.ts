import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Pgbus } from "../../src/bus.ts";
import type { WorkerEvents } from "../../src/observability/events.ts";
import { killThread, recordRun } from "../fixtures/thread-crash-jobs.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

const JOBS_MODULE = fileURLToPath(new URL("../fixtures/thread-crash-jobs.ts", import.meta.url));

let db: TestDatabase;
let bus: Pgbus;
const previousUrl = process.env.PGBUS_TEST_DB_URL;

before(async () => {
  db = await createTestDatabase("thread_crash");
  process.env.PGBUS_TEST_DB_URL = db.url; // read by the fixture jobs inside the threads
  bus = new Pgbus({ connectionString: db.url, jobs: [recordRun, killThread] });
  await bus.migrate();
  await db.pool.query("CREATE TABLE test_runs (msg_id bigint, attempt int, note text, pid int)");
});
after(async () => {
  await bus.close();
  await db.drop();
  if (previousUrl === undefined) delete process.env.PGBUS_TEST_DB_URL;
  else process.env.PGBUS_TEST_DB_URL = previousUrl;
});

test("threads mode: a job that kills its thread costs the bystanders on that thread no failure", async () => {
  const failures: Array<WorkerEvents["job:failure"]> = [];
  const dead: Array<WorkerEvents["job:dead"]> = [];
  bus.on("job:failure", (event) => void failures.push(event));
  bus.on("job:dead", (event) => void dead.push(event));
  const bystanders = await bus.enqueueMany(
    recordRun,
    Array.from({ length: 4 }, (_, n) => ({ note: `bystander ${n}`, sleepMs: 300 })),
  );
  const killer = await bus.enqueue(killThread, { afterMs: 100 });
  // One thread running every job at once, so the killer takes the bystanders down with it.
  const worker = bus.worker({ queues: ["work"], capacity: 5, executionMode: "threads", threads: 1, jobsModule: JOBS_MODULE });
  await worker.start();
  await waitFor(
    async () => (await db.pool.query("SELECT count(*)::int AS n FROM pgmq.q_work_dlq")).rows[0].n === 1,
    "the thread killer in the DLQ",
    30_000,
    50,
  );
  await waitFor(
    async () => (await db.pool.query("SELECT count(DISTINCT msg_id)::int AS n FROM test_runs")).rows[0].n === bystanders.length,
    "every bystander to complete",
    30_000,
    50,
  );
  await worker.stop();
  assert.deepEqual(
    failures.filter((failure) => failure.job === recordRun.name),
    [],
    "no failure reported for a bystander",
  );
  const recorded = await db.pool.query("SELECT DISTINCT msg_id::text AS id FROM pgbus.failed_jobs WHERE job = $1", [recordRun.name]);
  assert.deepEqual(recorded.rows, [], "no failure recorded for a bystander");
  assert.deepEqual(
    dead.map((event) => [event.messageId, event.reason]),
    [[killer, "max_deliveries"]],
  );
  const archived = await db.pool.query("SELECT msg_id::text AS id FROM pgmq.a_work ORDER BY msg_id");
  assert.deepEqual(
    archived.rows.map((row) => row.id),
    bystanders,
  );
});
