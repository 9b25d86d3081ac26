import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { defineSubscriber } from "../../src/events/subscriber.ts";
import { QueueClient } from "../../src/queue/client.ts";
import { FIXTURE_CONFIG, cliEnv, killAll, startCli, waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase, testServerAddress, type TestDatabase } from "../helpers/db.ts";
import { type Pgbouncer, findPgbouncer, startPgbouncer } from "../helpers/pgbouncer.ts";

const binary = findPgbouncer();
const skip =
  binary === null ? "the pgbouncer binary is not installed (Debian: apt-get install -y pgbouncer); skipping the PgBouncer tests" : false;

let db: TestDatabase;
let bouncer: Pgbouncer;

before(async () => {
  if (binary === null) return;
  db = await createTestDatabase("pgbouncer");
  bouncer = await startPgbouncer(binary, await testServerAddress());
});
after(async () => {
  await killAll();
  await bouncer?.stop();
  await db?.drop();
});

/** A bus whose statements go through PgBouncer in transaction mode, with LISTEN on the direct URL. */
function bouncedBus(jobs: Parameters<typeof defineJob>[0][] | unknown[] = []) {
  return new Pgbus({
    connectionString: bouncer.urlFor(db.url),
    directUrl: db.url,
    preparedStatements: false,
    jobs: jobs as never,
  });
}

test(
  "through a transaction-mode PgBouncer: migrate, enqueue, worker drain, retries, dead-letter and pause; wake-ups over the direct URL",
  { skip },
  async () => {
    const ran: number[] = [];
    const attempts = new Map<number, number>();
    const work = defineJob<{ n: number }>({
      name: "bounced",
      queue: "bounced",
      maxRetries: 2,
      backoff: { baseMs: 0, maxMs: 0, jitter: 0 },
      async perform({ n }, ctx) {
        attempts.set(n, ctx.attempt);
        if (n % 10 === 5 && ctx.attempt === 1) throw new Error("first attempt fails");
        if (n === 7) throw new Error("always fails");
        ran.push(n);
      },
    });
    const bus = bouncedBus([work]);
    try {
      await bus.migrate();
      // A poll a minute away: jobs enqueued after start begin through NOTIFY, on the direct LISTEN.
      const worker = bus.worker({ queues: ["bounced"], capacity: 20, pollIntervalMs: 60_000 });
      await worker.start();
      await bus.enqueue(work, { n: 0 });
      await waitFor(() => ran.includes(0), "the first job, started through NOTIFY", 20_000, 20);
      await bus.enqueueMany(
        work,
        Array.from({ length: 199 }, (_, i) => ({ n: i + 1 })),
      );
      // Retries become visible without a notification: a poll finds them.
      const poller = bus.worker({ queues: ["bounced"], capacity: 5, pollIntervalMs: 200 });
      await poller.start();
      await waitFor(() => ran.length === 199, "the drain of 200 jobs but the one that always fails", 30_000, 20);
      assert.equal(attempts.get(15), 2, "a failed job was retried");
      await waitFor(
        async () => Number((await db.pool.query("SELECT count(*) AS n FROM pgmq.q_bounced_dlq")).rows[0].n) === 1,
        "the failing job in the DLQ",
      );
      assert.equal(attempts.get(7), 3, "dead-lettered after its retries");

      await poller.stop();
      await bus.pauseQueue("bounced");
      await bus.enqueue(work, { n: 1_000 });
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.ok(!ran.includes(1_000), "a paused queue's job does not start");
      await bus.resumeQueue("bounced"); // the resume notifies: no poll needed
      await waitFor(() => ran.includes(1_000), "the job after resume", 20_000, 20);
      await worker.stop();
    } finally {
      await bus.close();
    }
  },
);

test("through a transaction-mode PgBouncer: publish and subscribe", { skip }, async () => {
  const seen: unknown[] = [];
  const audit = defineSubscriber<{ id: number }>({
    name: "bounced_audit",
    pattern: "orders.*",
    idempotent: true,
    async handle(event) {
      seen.push(event.payload.id);
    },
  });
  const bus = bouncedBus([audit]);
  try {
    await bus.migrate();
    // A poll a minute away: every event is handled through NOTIFY, on the direct LISTEN.
    const consumer = bus.consumer({ pollIntervalMs: 60_000 });
    await consumer.start();
    for (let id = 1; id <= 20; id++) await bus.publish("orders.created", { id });
    await waitFor(() => seen.length === 20, "every event handled", 20_000, 20);
    assert.deepEqual(
      [...seen].sort((a, b) => Number(a) - Number(b)),
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
    await consumer.stop();
  } finally {
    await bus.close();
  }
});

test("bad pooler options are typed errors naming the value", () => {
  assert.throws(
    () => new Pgbus({ connectionString: "postgres://localhost/x", preparedStatements: "no" as never }),
    (error: Error & { code?: string }) =>
      error.code === "INVALID_OPTION" && /preparedStatements must be true or false, got no/.test(error.message),
  );
  assert.throws(
    () => new Pgbus({ connectionString: "postgres://localhost/x", directUrl: "" }),
    (error: Error & { code?: string }) =>
      error.code === "INVALID_OPTION" && /directUrl must be a PostgreSQL URL, got ""/.test(error.message),
  );
});

test(
  "pgbus start through a transaction-mode PgBouncer: PGBUS_DIRECT_URL for LISTEN and the maintenance lock, statements unnamed",
  { skip },
  async () => {
    await db.pool.query("CREATE TABLE IF NOT EXISTS runs (msg_id bigint, job text, pid int)");
    const cli = startCli(
      ["start", "--config", FIXTURE_CONFIG],
      cliEnv(
        bouncer.urlFor(db.url),
        // A poll a minute away: the jobs start through the supervisor's LISTEN, on the direct URL.
        { preparedStatements: false, pollIntervalMs: 60_000, workers: [{ queues: ["work"], capacity: 10 }] },
        { PGBUS_DIRECT_URL: db.url },
      ),
    );
    await cli.waitForMessage("maintenance active: holds the maintenance lock");
    await cli.waitForMessage("child started", 2);
    const queues = new QueueClient(db.pool);
    await queues.createQueue("work");
    await new Promise((resolve) => setTimeout(resolve, 500)); // the worker's first poll is behind it
    await queues.sendBatch(
      "work",
      Array.from({ length: 50 }, () => ({ job: "record", payload: {} })),
    );
    await waitFor(async () => Number((await db.pool.query("SELECT count(*) AS n FROM runs")).rows[0].n) === 50, "50 jobs run", 20_000);
    cli.signal("SIGTERM");
    assert.equal((await cli.exited).code, 0, cli.dump());
  },
);
