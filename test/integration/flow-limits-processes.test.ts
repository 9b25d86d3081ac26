import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { QueueClient } from "../../src/queue/client.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";
import { FIXTURE_CONFIG, type CliProcess, cliEnv, killAll, startCli, waitFor } from "../fixtures/process/spawn.ts";

/**
 * Flow limits across real `pgbus start` processes: two supervisors, each with a worker
 * child over every queue of the fixture, sharing the limits through PostgreSQL; one worker
 * child is SIGKILLed mid-run (last, so the rate test has both). Runs record their spans
 * (test/fixtures/process/limits-jobs.ts). The processes are shared by the tests: starting
 * them is most of this file's time.
 */

let db: TestDatabase;
let first: CliProcess;
let second: CliProcess;

before(async () => {
  db = await createTestDatabase("limits_procs");
  await migrate(db.pool);
  await db.pool.query(`CREATE TABLE spans (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, msg_id bigint NOT NULL, key text NOT NULL,
                         pid integer NOT NULL, started_at timestamptz NOT NULL, ended_at timestamptz)`);
  for (const queue of ["limited", "paced", "queue_paced"]) await new QueueClient(db.pool).createQueue(queue);
  const config = {
    jobsModule: "./limits-jobs.ts",
    workers: [{ queues: ["limited", "paced", "queue_paced"], capacity: 20, visibilityTimeoutSec: 2 }],
    queues: { queue_paced: { rateLimit: { limit: 20, intervalMs: 1_000 } } },
  };
  first = startCli(["start", "--config", FIXTURE_CONFIG], cliEnv(db.url, config));
  second = startCli(["start", "--config", FIXTURE_CONFIG], cliEnv(db.url, config));
  await Promise.all([workerStarted(first), workerStarted(second)]);
});
after(async () => {
  await killAll();
  await db?.drop();
});

function workerStarted(cli: CliProcess): Promise<unknown> {
  return cli.waitForLines((line) => line.msg === "child started" && line.role === "worker 0", 1, 60_000);
}

async function scalar(text: string, values: unknown[] = []): Promise<number> {
  const result = await db.pool.query(text, values);
  return Number(Object.values(result.rows[0] as object)[0]);
}

async function enqueue(queue: string, messages: unknown[]): Promise<void> {
  await new QueueClient(db.pool).sendBatch(queue, messages);
}

test("rate: limit 20/s on a job and on a queue (config), two processes: no one-second window holds more than 21 starts", async () => {
  await enqueue(
    "paced",
    Array.from({ length: 60 }, (_, n) => ({ job: "paced", payload: { n } })),
  );
  await enqueue(
    "queue_paced",
    Array.from({ length: 60 }, () => ({ job: "queue_paced", payload: {} })),
  );
  await waitFor(async () => (await scalar("SELECT count(*) FROM spans")) >= 120, "120 starts", 30_000, 100);
  for (const key of ["paced", "queue_paced"]) {
    const worst = await scalar(
      `SELECT max(n) FROM (SELECT count(*) OVER (ORDER BY started_at RANGE BETWEEN CURRENT ROW AND interval '999.999 milliseconds' FOLLOWING) AS n
                              FROM spans WHERE key = $1) w`,
      [key],
    );
    assert.ok(worst <= 21, `${key}: at most 20 (+1) starts in any one-second window, saw ${worst}`);
    const spread = await scalar("SELECT extract(epoch FROM max(started_at) - min(started_at)) FROM spans WHERE key = $1", [key]);
    assert.ok(spread >= 2, `${key}: 60 starts at 20/s spread over at least 2 s, saw ${spread.toFixed(2)} s`);
  }
});

test("concurrency: 300 jobs over 3 keys, limit 2 per key, two processes, one worker SIGKILLed mid-run: never more than 2 per key, all complete", async () => {
  const keys = ["a", "b", "c"];
  await enqueue(
    "limited",
    Array.from({ length: 300 }, (_, n) => ({ job: "keyed", payload: { k: keys[n % 3], ms: 15 } })),
  );
  await waitFor(async () => (await scalar("SELECT count(*) FROM spans WHERE ended_at IS NOT NULL")) >= 90, "90 jobs done", 30_000, 20);
  const [victim] = first.childPids("worker 0");
  const killedAt = (performance.timeOrigin + performance.now()) / 1000;
  process.kill(victim!, "SIGKILL");
  await waitFor(
    async () => (await scalar("SELECT count(DISTINCT msg_id) FROM spans WHERE ended_at IS NOT NULL")) === 300,
    "all 300 jobs to complete",
    60_000,
    100,
  );
  // A run the SIGKILL cut short ran until the kill; every other run until its recorded end.
  const { rows } = await db.pool.query<{ key: string; at: number; delta: number }>(
    `SELECT key, at, delta FROM (
       SELECT key, extract(epoch FROM started_at)::float8 AS at, 1 AS delta FROM spans WHERE key IN ('a', 'b', 'c')
       UNION ALL
       SELECT key, coalesce(extract(epoch FROM ended_at)::float8, $1::float8), -1 FROM spans WHERE key IN ('a', 'b', 'c')) e
     ORDER BY key, at, delta`,
    [killedAt],
  );
  const most = new Map<string, number>();
  const running = new Map<string, number>();
  for (const row of rows) {
    const now = (running.get(row.key) ?? 0) + row.delta;
    running.set(row.key, now);
    most.set(row.key, Math.max(most.get(row.key) ?? 0, now));
  }
  assert.deepEqual(Object.fromEntries(most), { a: 2, b: 2, c: 2 }, "at most (and, under this load, exactly) 2 running per key");
  const cut = await scalar("SELECT count(*) FROM spans WHERE key IN ('a', 'b', 'c') AND ended_at IS NULL");
  assert.ok(cut <= 6, `the SIGKILL cut at most the 6 runs it could hold, saw ${cut}`);
  // Nothing leaks: once every job is done, no unit is held (the killed worker's lease is dropped as dead, the
  // survivor gives back units it stops using) and nobody waits.
  await waitFor(async () => (await scalar("SELECT count(*) FROM pgbus.concurrency_leases")) === 0, "leases to be given back");
  assert.equal(await scalar("SELECT count(*) FROM pgbus.blocked"), 0);
});
