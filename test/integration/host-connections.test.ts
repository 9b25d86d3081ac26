import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, test } from "node:test";
import { QueueClient } from "../../src/queue/client.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { FIXTURE_CONFIG, cliEnv, killAll, startCli, waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase } from "../helpers/db.ts";

const STALL_JOBS = fileURLToPath(new URL("../fixtures/stall/jobs.ts", import.meta.url));
const WORKERS = 4;

after(killAll);

test(`pgbus start with ${WORKERS} async workers at capacity 100 holds at most 2N + 3 connections, busy or idle`, async (t) => {
  const db = await createTestDatabase("host_connections");
  t.after(() => db.drop());
  await migrate(db.pool);
  await db.pool.query(
    "CREATE TABLE stall_runs (msg_id bigint, attempt int, event text, pid int, at timestamptz DEFAULT clock_timestamp())",
  );
  const queues = new QueueClient(db.pool);
  await queues.createQueue("work");
  const cli = startCli(
    ["start", "--config", FIXTURE_CONFIG],
    cliEnv(
      db.url,
      { jobsModule: STALL_JOBS, workers: Array.from({ length: WORKERS }, () => ({ queues: ["work"], capacity: 100 })) },
      { PGBUS_TEST_DB_URL: db.url },
    ),
  );
  // pgbus's own connections (the fixture job's recording pool is the application's).
  const held = async () =>
    Number(
      (
        await db.pool.query(
          "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'pgbus%'",
        )
      ).rows[0].n,
    );
  await waitFor(
    async () => Number((await db.pool.query("SELECT count(*) AS n FROM pgbus.processes")).rows[0].n) === WORKERS + 2,
    "every child's heartbeat row",
    30_000,
  );
  let most = 0;
  const sent = await queues.sendBatch(
    "work",
    Array.from({ length: 4_000 }, () => ({ job: "stall", payload: { ms: 5, failOnAttempt: 0 } })),
  );
  await waitFor(
    async () => {
      most = Math.max(most, await held());
      return Number((await db.pool.query("SELECT count(*) AS n FROM pgmq.a_work")).rows[0].n) === sent.length;
    },
    "the drain",
    60_000,
    20,
  );
  const idle = await held();
  t.diagnostic(`pgbus connections: ${most} at most during the drain, ${idle} idle`);
  cli.signal("SIGTERM");
  assert.equal((await cli.exited).code, 0);
  const limit = 2 * WORKERS + 3;
  assert.ok(most <= limit, `during the drain pgbus held ${most} connections; the formula allows ${limit}`);
  assert.ok(idle <= limit, `idle, pgbus held ${idle} connections; the formula allows ${limit}`);
  assert.ok(most >= WORKERS, `the sampling saw the workers' connections (${most})`);
  const rows = Number((await db.pool.query("SELECT count(*) AS n FROM pgbus.processes")).rows[0].n);
  assert.equal(rows, 0, "a clean stop leaves no heartbeat rows");
});
