/**
 * A queue dropped (pgmq.drop_queue) at the worst moment for whoever is using it: every path
 * reports the typed QUEUE_NOT_FOUND naming the queue, never PostgreSQL's "relation does not
 * exist", and a worker keeps serving its other queues. Each race is made deterministic: a
 * second connection holds the queue's table locked, the victim's statement waits on it,
 * and the drop commits in that same transaction.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { Pgbus } from "../../src/bus.ts";
import { PgbusError } from "../../src/errors.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { cliEnv, runCli, waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase("drop_races");
  await new Pgbus({ connectionString: db.url }).migrate();
});
after(() => db.drop());

const isQueueNotFound = (queue: string) => (error: unknown) => {
  assert.ok(error instanceof PgbusError, `a PgbusError, got ${String(error)}`);
  assert.equal(error.code, "QUEUE_NOT_FOUND");
  assert.match(error.message, new RegExp(`queue ${queue} (does not exist|was dropped)`));
  return true;
};

/**
 * Locks `queue`'s table on a connection of its own, waits until some other backend waits
 * for that lock running a statement that matches `waiter`, then drops the queue in the same
 * transaction and commits: the waiting statement resumes on a table that is gone.
 */
async function dropUnderWaitingStatement(queue: string, waiter: RegExp): Promise<void> {
  const locker = new pg.Client({ connectionString: db.url });
  await locker.connect();
  try {
    await locker.query("BEGIN");
    await locker.query(`LOCK TABLE pgmq."q_${queue}" IN SHARE MODE`); // blocks inserts, not reads
    await waitFor(
      async () => {
        const waiting = await db.pool.query<{ query: string }>(
          "SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
        );
        return waiting.rows.some((row) => waiter.test(row.query)) || undefined;
      },
      `a statement matching ${waiter} to wait for the lock`,
      20_000,
      20,
    );
    await locker.query("SELECT pgmq.drop_queue($1)", [queue]);
    await locker.query("COMMIT");
  } finally {
    await locker.end();
  }
}

describe("a queue dropped under a producer", () => {
  test("pgbus enqueue (a job no jobs module defines): the queue it just made is dropped before its insert", async () => {
    const queue = "cli_race";
    // Made the way the CLI makes it, so the CLI's own make is a no-op that takes no table lock.
    await db.pool.query("SELECT pgbus.ensure_queue($1, true)", [queue]);
    const enqueue = runCli(["enqueue", "anything", '{"n":1}', "--queue", queue], cliEnv(db.url));
    await dropUnderWaitingStatement(queue, /INSERT INTO pgmq\."q_cli_race"/);
    const result = await enqueue;
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^pgbus: queue cli_race does not exist/);
    assert.doesNotMatch(result.stderr, /relation/);
  });

  test("the queue client's send and sendBatch, on a queue dropped after it was made", async () => {
    const bus = new Pgbus({ connectionString: db.url });
    try {
      await bus.queues.createQueue("client_race");
      await bus.queues.send("client_race", { n: 1 });
      await db.pool.query("SELECT pgmq.drop_queue('client_race')");
      await assert.rejects(bus.queues.send("client_race", { n: 2 }), isQueueNotFound("client_race"));
      await assert.rejects(bus.queues.sendBatch("client_race", [{ n: 3 }]), isQueueNotFound("client_race"));
      await assert.rejects(bus.queues.sendBatch("client_race", [{ n: 4 }], { uniqueKeys: ["k"] }), isQueueNotFound("client_race"));
    } finally {
      await bus.close();
    }
  });

  test("enqueue and enqueueMany inside the caller's transaction, on a queue the bus remembers as made", async () => {
    const job = defineJob({ name: "tx_race_job", queue: "tx_race", perform() {} });
    const bus = new Pgbus({ connectionString: db.url, jobs: [job] });
    try {
      for (const send of [
        (client: pg.PoolClient) => bus.enqueue(job, {}, { client }),
        (client: pg.PoolClient) => bus.enqueueMany(job, [{}, {}], { client }),
      ]) {
        await bus.enqueue(job, {}); // made, and remembered
        await db.pool.query("SELECT pgmq.drop_queue('tx_race')");
        const client = await db.pool.connect();
        try {
          await client.query("BEGIN");
          await assert.rejects(send(client), isQueueNotFound("tx_race"));
        } finally {
          await client.query("ROLLBACK");
          client.release();
        }
      }
      // Outside a transaction the bus makes the queue again, as on first use.
      assert.ok(await bus.enqueue(job, {}));
    } finally {
      await bus.close();
    }
  });

  test("publish in a REPEATABLE READ transaction whose snapshot still shows the binding of a dropped subscriber queue", async () => {
    const bus = new Pgbus({ connectionString: db.url });
    bus.subscribe("race.*", () => {}, { name: "race_sub" });
    try {
      await bus.migrate();
      const client = await db.pool.connect();
      try {
        await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
        await client.query("SELECT count(*) FROM pgmq.topic_bindings"); // takes the snapshot
        await db.pool.query("SELECT pgmq.drop_queue('ev_race_sub')");
        await assert.rejects(bus.publish("race.created", { n: 1 }, { client }), isQueueNotFound("ev_race_sub"));
      } finally {
        await client.query("ROLLBACK");
        client.release();
      }
    } finally {
      await bus.close();
    }
  });
});

describe("a queue dropped under a worker", () => {
  test("a * worker keeps claiming and extending the VTs of its other queues' jobs", async () => {
    const started: string[] = [];
    const slow = defineJob<{ ms: number }>({
      name: "slow_other",
      queue: "keep_q",
      async perform({ ms }) {
        started.push("keep_q");
        await new Promise((resolve) => setTimeout(resolve, ms));
      },
    });
    const doomed = defineJob<{ ms: number }>({
      name: "slow_doomed",
      queue: "doomed_q",
      async perform({ ms }) {
        started.push("doomed_q");
        await new Promise((resolve) => setTimeout(resolve, ms));
      },
    });
    const bus = new Pgbus({ connectionString: db.url, jobs: [slow, doomed] });
    await bus.migrate();
    const errors: string[] = [];
    bus.on("worker:error", ({ context }) => void errors.push(context));
    const worker = bus.worker({ queues: ["*"], capacity: 4, visibilityTimeoutSec: 1, pollIntervalMs: 50 });
    try {
      await worker.start();
      // Both in flight for three VTs: only extensions keep the surviving one this worker's.
      const kept = await bus.enqueue(slow, { ms: 3_000 });
      await bus.enqueue(doomed, { ms: 1_000 });
      await waitFor(() => started.length === 2 || undefined, "both jobs to start", 10_000, 20);
      await db.pool.query("SELECT pgmq.drop_queue('doomed_q')");
      const later = await bus.enqueue(slow, { ms: 0 });
      const archived = async (id: string) =>
        (await db.pool.query<{ read_ct: number }>("SELECT read_ct FROM pgmq.a_keep_q WHERE msg_id = $1", [id])).rows[0];
      await waitFor(() => archived(later), "a job enqueued after the drop to run", 10_000, 50);
      const first = await waitFor(() => archived(kept), "the long job to finish", 10_000, 50);
      assert.equal(first.read_ct, 1, "claimed once: its VT was extended all along, so it was never handed out again");
      assert.deepEqual(
        started.filter((queue) => queue === "keep_q"),
        ["keep_q", "keep_q"],
      );
      assert.ok(
        errors.some((context) => /doomed_q/.test(context)),
        `the dropped queue is reported: ${JSON.stringify(errors)}`,
      );
    } finally {
      await worker.stop();
      await bus.close();
    }
  });
});
