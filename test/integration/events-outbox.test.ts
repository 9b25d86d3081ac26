import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, before, beforeEach, describe, test } from "node:test";
import pg from "pg";
import { Pgbus } from "../../src/bus.ts";
import { OutboxPoller } from "../../src/events/outbox-poller.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

const OUTBOX_CHILD = fileURLToPath(new URL("../fixtures/events/outbox-child.ts", import.meta.url));
/** Poller children still running: killed in after(), so a failed test leaks none. */
const children = new Set<ChildProcess>();

let db: TestDatabase;
let bus: Pgbus;
const pools: pg.Pool[] = [];

const shipJob = defineJob<{ n: number }>({ name: "ship", queue: "ob_jobs", perform() {} });

before(async () => {
  db = await createTestDatabase("ev_outbox");
  bus = new Pgbus({ connectionString: db.url, jobs: [shipJob] });
  bus.subscribe("ob.#", () => {}, { name: "ob_one" });
  bus.subscribe("ob.*.created", () => {}, { name: "ob_two" });
  await bus.migrate();
});
after(async () => {
  for (const child of children) child.kill("SIGKILL");
  await bus.close();
  await Promise.all(pools.map((pool) => pool.end()));
  await db.drop();
});
beforeEach(async () => {
  await db.pool.query("TRUNCATE pgbus.outbox");
  for (const queue of ["ob_jobs", "ev_ob_one", "ev_ob_two"]) await bus.queues.purgeQueue(queue);
});

const count = async (text: string, values: unknown[] = []) => Number((await db.pool.query(text, values)).rows[0].n);

async function until(predicate: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A poller on a pool of its own, as if in another process. */
function poller(options: { batchSize?: number; pollIntervalMs?: number } = {}): OutboxPoller {
  const pool = new pg.Pool({ connectionString: db.url, max: 2 });
  pool.on("error", () => {}); // idle connections die when the test database is dropped
  pools.push(pool);
  return new OutboxPoller({ pool, batchSize: options.batchSize ?? 50, pollIntervalMs: options.pollIntervalMs ?? 50 });
}

describe("outbox poller", () => {
  test("2,000 rows written in concurrent transactions, two pollers: every row sent exactly once", async () => {
    const pollers = [poller(), poller()];
    await Promise.all(pollers.map((p) => p.start()));
    const eventIds: string[] = [];
    try {
      // 40 transactions of 25 jobs + 25 events each, 8 at a time, while the pollers run.
      const writers = Array.from({ length: 40 }, (_, t) => async () => {
        const client = await db.pool.connect();
        try {
          await client.query("BEGIN");
          await bus.outbox.enqueueMany(
            shipJob,
            Array.from({ length: 25 }, (_, i) => ({ n: t * 25 + i })),
            { client },
          );
          for (let i = 0; i < 25; i++) eventIds.push((await bus.outbox.publish("ob.order.created", { n: t * 25 + i }, { client })).eventId);
          await client.query("COMMIT");
        } finally {
          client.release();
        }
      });
      for (let i = 0; i < writers.length; i += 8) await Promise.all(writers.slice(i, i + 8).map((write) => write()));
      await until(async () => (await count("SELECT count(*) AS n FROM pgbus.outbox")) === 0);
    } finally {
      await Promise.all(pollers.map((p) => p.stop()));
    }
    assert.equal(eventIds.length, 1_000);
    const jobs = await db.pool.query(
      "SELECT count(*)::int AS n, count(DISTINCT (message->'payload'->>'n'))::int AS distinct_n FROM pgmq.q_ob_jobs",
    );
    assert.deepEqual(jobs.rows[0], { n: 1_000, distinct_n: 1_000 });
    for (const queue of ["ev_ob_one", "ev_ob_two"]) {
      const events = await db.pool.query(
        `SELECT count(*)::int AS n, count(DISTINCT message->>'event_id')::int AS distinct_ids,
                count(*) FILTER (WHERE message->>'event_id' = ANY($1::text[]))::int AS known FROM pgmq.q_${queue}`,
        [eventIds],
      );
      assert.deepEqual(events.rows[0], { n: 1_000, distinct_ids: 1_000, known: 1_000 }, queue);
    }
    const [a, b] = pollers.map((p) => p.stats());
    assert.equal(a!.moved + b!.moved, 2_000);
    console.log(`# poller A moved ${a!.moved} rows in ${a!.batches} batches, poller B ${b!.moved} in ${b!.batches}`);
  });

  test("a notification wakes the poller at once (no poll for a minute); delayMs is kept for jobs", async () => {
    const p = poller({ pollIntervalMs: 60_000 });
    await p.start();
    try {
      // Well under the 60 s poll interval, even on a loaded machine.
      await bus.outbox.enqueue(shipJob, { n: 1 });
      await until(async () => (await count("SELECT count(*) AS n FROM pgmq.q_ob_jobs")) === 1, 15_000);
      const before = (await db.pool.query("SELECT clock_timestamp() AS t")).rows[0].t as Date;
      await bus.outbox.enqueue(shipJob, { n: 2 }, { delayMs: 3_000, headers: { h: 1 } });
      await until(async () => (await count("SELECT count(*) AS n FROM pgmq.q_ob_jobs")) === 2, 15_000);
      const { rows } = await db.pool.query(
        "SELECT headers, vt >= $1::timestamptz + interval '3 seconds' AS delayed FROM pgmq.q_ob_jobs WHERE message->'payload'->>'n' = '2'",
        [before],
      );
      assert.deepEqual(rows, [{ headers: { h: 1 }, delayed: true }], "visible no sooner than 3 s after the write");
    } finally {
      await p.stop();
    }
  });

  test("a row that cannot be moved is set aside with backoff and does not block the rows behind it", async () => {
    const doomed = defineJob<{ n: number }>({ name: "doomed", queue: "ob_doomed", perform() {} });
    await bus.outbox.enqueue(doomed, { n: 0 });
    await bus.queues.dropQueue("ob_doomed"); // its queue is gone before the poller runs
    for (let n = 1; n <= 5; n++) await bus.outbox.enqueue(shipJob, { n });
    const p = poller();
    await p.start();
    try {
      await until(async () => (await count("SELECT count(*) AS n FROM pgmq.q_ob_jobs")) === 5);
      const { rows } = await db.pool.query(
        "SELECT target, attempts, last_error, available_at > clock_timestamp() AS later FROM pgbus.outbox",
      );
      assert.equal(rows.length, 1);
      assert.equal(rows[0].target, "ob_doomed");
      assert.ok(rows[0].attempts >= 1);
      assert.match(rows[0].last_error, /ob_doomed/);
      assert.equal(rows[0].later, true);
      assert.ok(p.stats().deferred >= 1);
    } finally {
      await p.stop();
    }
  });

  test("a poller SIGKILLed mid-batch: each batch is moved whole or not at all, and every row is sent exactly once", async () => {
    const total = 1_000;
    await bus.outbox.enqueueMany(
      shipJob,
      Array.from({ length: total }, (_, n) => ({ n })),
    );
    // Every batch's send takes a while, so a kill lands while a batch is under way.
    await db.pool.query(`
      CREATE FUNCTION slow_send() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.4); RETURN NULL; END $$;
      CREATE TRIGGER slow_send AFTER INSERT ON pgmq.q_ob_jobs FOR EACH STATEMENT EXECUTE FUNCTION slow_send();`);
    /** The child's move statement under way: its backend and when the statement began. */
    const movingBackend = async () =>
      (
        await db.pool.query<{ pid: number; started: string }>(
          `SELECT pid, query_start::text AS started FROM pg_stat_activity
            WHERE datname = current_database() AND application_name = 'pgbus:test:outbox-child' AND state = 'active'
              AND query LIKE '%DELETE FROM pgbus.outbox%'`,
        )
      ).rows[0];
    const sent = async () =>
      (await db.pool.query("SELECT count(*)::int AS n, count(DISTINCT message->'payload'->>'n')::int AS distinct_n FROM pgmq.q_ob_jobs"))
        .rows[0] as { n: number; distinct_n: number };
    let clientKills = 0;
    let backendKills = 0;
    try {
      // Kills until two left the backend to finish its statement (as PostgreSQL does when a
      // client dies) and one also ended the backend mid-statement (as a crash of the host
      // would), which must roll the whole batch back.
      for (let round = 0; round < 10 && (clientKills < 2 || backendKills < 1); round++) {
        const endBackend = clientKills >= 2;
        const child = spawn(process.execPath, ["--import", "tsx", OUTBOX_CHILD, db.url, "50"], { stdio: ["ignore", "pipe", "inherit"] });
        children.add(child);
        const exited = new Promise((resolve) => child.on("exit", resolve));
        const backend = await waitFor(movingBackend, "the child's batch under way");
        const before = await sent();
        child.kill("SIGKILL");
        // Only if that very statement is still running: then it had not committed when `before` was read.
        const ended =
          endBackend &&
          (
            await db.pool.query(
              "SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE pid = $1 AND query_start::text = $2 AND state = 'active'",
              [backend.pid, backend.started],
            )
          ).rows[0]?.ended === true;
        await exited;
        children.delete(child);
        await waitFor(async () => (await movingBackend()) === undefined, "the batch to end");
        const after = await sent();
        const left = await count("SELECT count(*) AS n FROM pgbus.outbox");
        assert.equal(after.n, after.distinct_n, "no row sent twice");
        assert.equal(after.n + left, total, "every row is either sent or still in the outbox");
        assert.equal((after.n - before.n) % 50, 0, "a batch is moved whole or not at all");
        if (ended) {
          assert.equal(after.n, before.n, "the batch whose backend ended mid-statement was rolled back whole");
          backendKills++;
        } else if (!endBackend) clientKills++;
      }
      assert.deepEqual({ clientKills, backendKills }, { clientKills: 2, backendKills: 1 });
      await db.pool.query("DROP TRIGGER slow_send ON pgmq.q_ob_jobs");
      const p = poller({ batchSize: 100 });
      await p.start();
      try {
        await until(async () => (await count("SELECT count(*) AS n FROM pgbus.outbox")) === 0);
      } finally {
        await p.stop();
      }
      assert.deepEqual(await sent(), { n: total, distinct_n: total });
    } finally {
      await db.pool.query("DROP TRIGGER IF EXISTS slow_send ON pgmq.q_ob_jobs; DROP FUNCTION IF EXISTS slow_send()");
    }
  });

  test("lifecycle: stop before start, start twice, stop twice", async () => {
    const idle = poller();
    await idle.stop();
    await idle.stop();
    await idle.start(); // a stopped poller stays stopped
    const p = poller();
    await Promise.all([p.start(), p.start()]);
    await Promise.all([p.stop(), p.stop()]);
    await p.stop();
    assert.throws(() => new OutboxPoller({ pool: db.pool, batchSize: 0 }), /batchSize/);
    const viaBus = bus.outboxPoller({ batchSize: 10 });
    await viaBus.start();
    await bus.outbox.publish("ob.x.created", {});
    await until(async () => (await count("SELECT count(*) AS n FROM pgmq.q_ev_ob_two")) === 1);
    await viaBus.stop();
  });

  test("bad input is rejected before anything is written", async () => {
    await assert.rejects(bus.outbox.publish("ob..bad", {}), { code: "INVALID_ROUTING_KEY" });
    await assert.rejects(bus.outbox.publish("ob.ok", {}, { delayMs: Number.NaN }), { code: "INVALID_OPTION" });
    await assert.rejects(bus.outbox.publish("ob.ok", { big: 1n }), { code: "INVALID_PAYLOAD" });
    await assert.rejects(bus.outbox.enqueue(shipJob, { n: 1 }, { client: {} as never }), { code: "INVALID_OPTION" });
    assert.equal(await count("SELECT count(*) AS n FROM pgbus.outbox"), 0);
  });
});
