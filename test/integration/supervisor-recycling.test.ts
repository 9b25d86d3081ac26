import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, test } from "node:test";
import { QueueClient } from "../../src/queue/client.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { FIXTURE_CONFIG, cliEnv, killAll, startCli, waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase } from "../helpers/db.ts";

const STALL_JOBS = fileURLToPath(new URL("../fixtures/stall/jobs.ts", import.meta.url));

after(killAll);

test("recycling workers give prefetched messages back without using up their attempts: every first run is attempt 1", async (t) => {
  const db = await createTestDatabase("recycle_attempts");
  t.after(() => db.drop());
  await migrate(db.pool);
  await db.pool.query(
    "CREATE TABLE stall_runs (msg_id bigint, attempt int, event text, pid int, at timestamptz DEFAULT clock_timestamp())",
  );
  const queues = new QueueClient(db.pool);
  await queues.createQueue("work");
  const sent = await queues.sendBatch(
    "work",
    Array.from({ length: 12 }, () => ({ job: "stall", payload: { ms: 20, failOnAttempt: 0 } })),
  );
  // Capacity 2 with a prefetch of 2 and a recycle every 3 jobs: each recycle gives
  // prefetched messages back, many times over the run.
  const cli = startCli(
    ["start", "--config", FIXTURE_CONFIG, "--only", "workers"],
    cliEnv(
      db.url,
      {
        jobsModule: STALL_JOBS,
        workers: [{ queues: ["work"], capacity: 2 }],
        maxJobsPerWorker: 3,
        restartBackoff: { baseMs: 10, maxMs: 50 },
      },
      { PGBUS_TEST_DB_URL: db.url },
    ),
  );
  await waitFor(
    async () => (await db.pool.query("SELECT count(*)::int AS n FROM pgmq.a_work")).rows[0].n === sent.length,
    "every job archived",
    120_000,
    100,
  );
  cli.signal("SIGTERM");
  await cli.exited;
  const recycles = (await db.pool.query("SELECT count(DISTINCT pid)::int AS n FROM stall_runs")).rows[0].n;
  assert.ok(recycles >= 2, `the worker was recycled (${recycles} processes ran jobs)`);
  const attempts = await db.pool.query(
    "SELECT attempt, count(*)::int AS n FROM stall_runs WHERE event = 'start' GROUP BY attempt ORDER BY 1",
  );
  assert.deepEqual(attempts.rows, [{ attempt: 1, n: sent.length }], "each job ran once, as attempt 1");
  const archived = await db.pool.query("SELECT max(read_ct)::int AS most FROM pgmq.a_work");
  assert.equal(archived.rows[0].most, 1, "no claim left counted beyond the run");
  const dead = await db.pool.query("SELECT count(*)::int AS n FROM pgmq.q_work_dlq");
  assert.equal(dead.rows[0].n, 0);
});
