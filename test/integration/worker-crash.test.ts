import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, test } from "node:test";
import { QueueClient } from "../../src/queue/client.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { FIXTURE_CONFIG, cliEnv, killAll, startCli, waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase } from "../helpers/db.ts";

const CRASH_JOBS = fileURLToPath(new URL("../fixtures/process/crash-jobs.ts", import.meta.url));

after(killAll);

test("a job that crashes its worker process reaches the DLQ as max_deliveries; the jobs beside it complete", async (t) => {
  const db = await createTestDatabase("worker_crash");
  t.after(() => db.drop());
  await migrate(db.pool);
  await db.pool.query("CREATE TABLE runs (msg_id bigint NOT NULL, job text NOT NULL, pid integer NOT NULL)");
  const queues = new QueueClient(db.pool);
  await queues.createQueue("work");
  const [crashId] = await queues.sendBatch("work", [{ job: "crash", payload: {} }]);
  const others = await queues.sendBatch(
    "work",
    Array.from({ length: 20 }, () => ({ job: "record", payload: {} })),
  );
  const cli = startCli(
    ["start", "--config", FIXTURE_CONFIG, "--only", "workers"],
    cliEnv(db.url, {
      jobsModule: CRASH_JOBS,
      workers: [{ queues: ["work"], capacity: 5, visibilityTimeoutSec: 1 }],
      restartBackoff: { baseMs: 10, maxMs: 50 },
    }),
  );
  const dead = await waitFor(
    async () => (await db.pool.query("SELECT headers FROM pgmq.q_work_dlq")).rows[0]?.headers,
    "the crashing job in the DLQ",
    60_000,
    200,
  );
  assert.equal(dead.pgbus_error.reason, "max_deliveries");
  assert.equal(dead.pgbus_source_msg_id, crashId);
  await waitFor(
    async () => (await db.pool.query("SELECT count(DISTINCT msg_id)::int AS n FROM runs WHERE job = 'record'")).rows[0].n === 20,
    "the 20 other jobs",
    30_000,
    200,
  );
  cli.signal("SIGTERM");
  await cli.exited;
  const crashRuns = (await db.pool.query("SELECT count(*)::int AS n FROM runs WHERE job = 'crash'")).rows[0].n;
  // maxRetries 2: three runs, one spare delivery, then the DLQ instead of a fifth.
  assert.ok(crashRuns <= 4, `the crashing job ran ${crashRuns} times`);
  const recorded = (await db.pool.query("SELECT DISTINCT msg_id::text AS id FROM runs WHERE job = 'record' ORDER BY 1")).rows;
  assert.deepEqual(recorded.map((row) => row.id).sort(), [...others].sort());
  const left = (await db.pool.query("SELECT count(*)::int AS n FROM pgmq.q_work")).rows[0].n;
  assert.equal(left, 0);
});
