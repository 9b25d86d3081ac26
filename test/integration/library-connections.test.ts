import assert from "node:assert/strict";
import { test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase } from "../helpers/db.ts";

const JOBS = 3_000;

test("library mode: one Pgbus and one worker at capacity 100 hold at most 3 connections in all, draining or idle", async (t) => {
  const db = await createTestDatabase("library_connections");
  t.after(() => db.drop());
  let ran = 0;
  const job = defineJob<{ n: number }>({
    name: "tick",
    queue: "ticks",
    async perform() {
      await new Promise((resolve) => setTimeout(resolve, 2));
      ran++;
    },
  });
  const bus = new Pgbus({ connectionString: db.url, jobs: [job] });
  t.after(() => bus.close());
  await bus.migrate();
  // The bus's connection from the enqueue is idle in its pool when the worker starts.
  await bus.enqueueMany(
    job,
    Array.from({ length: JOBS }, (_, n) => ({ n })),
  );
  const held = async () =>
    Number(
      (
        await db.pool.query(
          "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'pgbus%'",
        )
      ).rows[0].n,
    );
  const worker = bus.worker({ queues: ["ticks"], capacity: 100 });
  await worker.start();
  let most = 0;
  await waitFor(
    async () => {
      most = Math.max(most, await held());
      return ran === JOBS;
    },
    "the drain",
    30_000,
    10,
  );
  // One more job after the drain: enqueue and claim share the same connections. Enqueued
  // once the drain's last acks are flushed: an enqueue while both worker connections are
  // busy opens a third pool connection for it (the bus's own statements are not capped by
  // the worker's share), which then stays idle in the pool.
  await waitFor(
    async () =>
      Number((await db.pool.query("SELECT count(*) AS n FROM pgmq.q_ticks")).rows[0].n) === 0 &&
      Number(
        (
          await db.pool.query(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgbus' AND state = 'active'",
          )
        ).rows[0].n,
      ) === 0,
    "the drain's acks flushed and the worker idle",
    10_000,
    20,
  );
  await bus.enqueue(job, { n: JOBS });
  await waitFor(() => ran === JOBS + 1, "a job enqueued after the drain");
  const idle = await held();
  t.diagnostic(`pgbus connections: ${most} at most during the drain, ${idle} after it`);
  assert.ok(most <= 3, `during the drain the process held ${most} connections; at most 3 allowed`);
  assert.ok(idle <= 3, `after the drain the process held ${idle} connections; at most 3 allowed`);
  assert.ok(most >= 2, `the sampling saw the worker's connections (${most})`);
  await worker.stop();
});
