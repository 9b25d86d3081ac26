import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import type { TransactionalQueryable } from "../../src/db/queryable.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { JobRegistry } from "../../src/jobs/registry.ts";
import { silentLogger } from "../../src/logger.ts";
import { SafeEmitter } from "../../src/observability/emitter.ts";
import type { WorkerEvents } from "../../src/observability/events.ts";
import { jobEnvelope } from "../../src/queue/envelope.ts";
import { QueueClient } from "../../src/queue/client.ts";
import type { NotificationSource } from "../../src/worker/notifications.ts";
import { Worker } from "../../src/worker/worker.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

const QUEUES = 300;
const names = Array.from({ length: QUEUES }, (_, i) => `mq_${String(i).padStart(3, "0")}`);
const last = names.at(-1)!;

let db: TestDatabase;
const ran: string[] = [];
const job = defineJob<{ tag: string }>({
  name: "many_job",
  queue: last,
  async perform({ tag }) {
    ran.push(tag);
  },
});

before(async () => {
  db = await createTestDatabase("many_queues");
  await new Pgbus({ connectionString: db.url }).migrate();
  // All queues in one statement (no DLQs: a `*` worker ignores them anyway).
  await db.pool.query("SELECT pgbus.ensure_queue(name, false) FROM unnest($1::text[]) AS name", [names]);
});
after(() => db.drop());

/** A `*` worker over every queue of the test database. */
function wildcardWorker(bus: Pgbus, pollIntervalMs: number) {
  return bus.worker({ queues: ["*"], capacity: 10, pollIntervalMs });
}

test(`a job in the last of ${QUEUES} queues is picked up through NOTIFY, long before any poll`, async () => {
  const bus = new Pgbus({ connectionString: db.url, jobs: [job] });
  // A poll a minute away: only the notification can start the job in time.
  const worker = wildcardWorker(bus, 60_000);
  await worker.start();
  try {
    await waitFor(() => worker.queues.length === QUEUES, "the worker to list every queue");
    await bus.enqueue(job, { tag: "warm-up" }); // creates nothing: the queue exists; warms the bus's pool
    await waitFor(() => ran.includes("warm-up"), "the warm-up job", 20_000, 5);
    // The first poll (at start) is done once the worker is idle; LISTEN is in place after start().
    const sentAt = Date.now();
    await bus.enqueue(job, { tag: "notified" });
    await waitFor(() => ran.includes("notified"), "the notified job", 10_000, 5);
    const tookMs = Date.now() - sentAt;
    assert.ok(tookMs < 10_000, `the job started ${tookMs} ms after enqueue`);
  } finally {
    await worker.stop();
    await bus.close();
  }
});

test("with NOTIFY lost (no LISTEN), the one-statement backstop poll still finds a job in the last queue", async () => {
  const silent: NotificationSource = { start: async () => {}, stop: async () => {} };
  const bus = new Pgbus({ connectionString: db.url, jobs: [job], notifications: () => silent });
  const worker = wildcardWorker(bus, 200);
  await worker.start();
  try {
    await bus.enqueue(job, { tag: "polled" });
    await waitFor(() => ran.includes("polled"), "the job found by the backstop poll", 15_000, 20);
  } finally {
    await worker.stop();
    await bus.close();
  }
});

test(`idle over ${QUEUES} queues, a worker sends one statement per backstop poll and claims from none`, async () => {
  const statements: string[] = [];
  // Counts every statement the worker sends, named (prepared) or not.
  const counting: TransactionalQueryable = {
    connect: () => db.pool.connect(),
    query(text: unknown, values?: unknown[]) {
      const config = typeof text === "string" ? { text, values } : (text as { name?: string; text: string });
      statements.push((config as { name?: string }).name ?? (config as { text: string }).text);
      return db.pool.query(config as never);
    },
  } as TransactionalQueryable;
  const silent: NotificationSource = { start: async () => {}, stop: async () => {} };
  const worker = new Worker(
    { queues: ["*"], capacity: 10, pollIntervalMs: 100 },
    {
      db: counting,
      registry: new JobRegistry([job]),
      logger: silentLogger,
      emitter: new SafeEmitter<WorkerEvents>(() => silentLogger),
      notifications: () => silent,
    },
  );
  const queues = new QueueClient(db.pool);
  await worker.start();
  try {
    // Skip start-up (queue creation checks); then count a second or more of idle polling.
    await waitFor(() => statements.filter((s) => s.includes("queues_with_work")).length >= 2, "the first polls");
    statements.length = 0;
    await waitFor(() => statements.length >= 8, "eight idle polls", 15_000, 20);
    const polls = statements.filter((s) => s.includes("queues_with_work")).length;
    // Besides the polls, a `*` worker lists the queues every few seconds (one statement too).
    const listings = statements.filter((s) => s === "pgbus_job_queues").length;
    assert.equal(polls + listings, statements.length, `idle, the worker only polls; got ${JSON.stringify([...new Set(statements)])}`);
    assert.ok(listings <= polls / 4, `queue listings (${listings}) stay rare next to polls (${polls})`);
    // Work in one queue: the next poll finds it, and only that queue is claimed from.
    await queues.send(names[150]!, jobEnvelope(job.name, { tag: "found" }));
    await waitFor(() => ran.includes("found"), "the job found by the poll", 15_000, 20);
    const claimed = new Set(
      statements.filter((s) => s.startsWith("pgbus_claim_")).map((s) => s.replace(/^pgbus_claim_(archive|delete)_/, "")),
    );
    assert.deepEqual([...claimed], [names[150]], "claims went to the queue with work only");
  } finally {
    await worker.stop();
  }
});

test("pgbus.queues_with_work: visible work only, not paused, gone queues flagged; an emptied queue leaves the list until its next insert", async () => {
  const poll = async (queues: string[]) =>
    (await db.pool.query("SELECT queue_name, missing FROM pgbus.queues_with_work($1)", [queues])).rows.map(
      (row: { queue_name: string; missing: boolean }) => (row.missing ? `${row.queue_name}:missing` : row.queue_name),
    );
  const listed = async (queue: string) =>
    (await db.pool.query("SELECT 1 FROM pgbus.nonempty_queues WHERE queue_name = $1", [queue])).rowCount === 1;
  const queues = new QueueClient(db.pool);
  const [visible, delayed, paused, other] = ["qw_visible", "qw_delayed", "qw_paused", "qw_other"];
  for (const queue of [visible, delayed, paused]) await queues.createQueue(queue);
  // A queue another PGMQ client made has no pgbus insert trigger: it is always checked.
  await db.pool.query("SELECT pgmq.create($1)", [other]);
  await queues.send(visible!, { n: 1 });
  await queues.send(delayed!, { n: 1 }, { delayMs: 60_000 });
  await queues.send(paused!, { n: 1 });
  await queues.send(other!, { n: 1 });
  await db.pool.query("INSERT INTO pgbus.queue_states (queue_name, paused) VALUES ($1, true)", [paused]);
  assert.deepEqual(await poll([visible!, delayed!, paused!, other!, "qw_gone"]), [visible, other, "qw_gone:missing"]);
  assert.ok(await listed(delayed!), "a queue holding only delayed messages stays listed");

  await queues.purgeQueue(visible!);
  assert.deepEqual(await poll([visible!]), []);
  assert.equal(await listed(visible!), false, "an empty queue leaves the list");
  assert.deepEqual(await poll([visible!]), []);
  await queues.send(visible!, { n: 2 });
  assert.equal(await listed(visible!), true, "the next insert lists it again");
  assert.deepEqual(await poll([visible!]), [visible]);
});

test("a busy worker still polls: work that appears without a notification in a higher-priority queue is not left behind a backlog", async () => {
  const order: string[] = [];
  const make = (queue: string, ms: number) =>
    defineJob<{ n: number }>({
      name: `prio_${queue}`,
      queue,
      async perform({ n }) {
        await new Promise((resolve) => setTimeout(resolve, ms));
        order.push(`${queue}:${n}`);
      },
    });
  const urgent = make("prio_a", 0);
  const backlog = make("prio_b", 5);
  const silent: NotificationSource = { start: async () => {}, stop: async () => {} };
  const bus = new Pgbus({ connectionString: db.url, jobs: [urgent, backlog], notifications: () => silent });
  await bus.migrate();
  const backlogSize = 2_000;
  await bus.enqueueMany(
    backlog,
    Array.from({ length: backlogSize }, (_, n) => ({ n })),
  );
  const worker = bus.worker({ queues: ["prio_a", "prio_b"], capacity: 5, pollIntervalMs: 200 });
  await worker.start();
  try {
    await waitFor(() => order.length >= 10, "the backlog under way", 15_000, 5);
    await bus.enqueue(urgent, { n: 0 }); // no LISTEN: only a poll can find it
    await waitFor(() => order.includes("prio_a:0"), "the urgent job", 30_000, 5);
    const backlogDone = order.filter((entry) => entry.startsWith("prio_b")).length;
    assert.ok(backlogDone < backlogSize, `the urgent job ran after the whole backlog (${backlogDone} of ${backlogSize})`);
  } finally {
    await worker.stop();
    await bus.close();
  }
});

test("an enqueue inside an open transaction does not hold up other producers of its queue", async () => {
  const queues = new QueueClient(db.pool);
  await queues.createQueue("mq_open_tx");
  await db.pool.query("DELETE FROM pgbus.nonempty_queues WHERE queue_name = 'mq_open_tx'"); // as after a poll found it empty
  const producer = await db.pool.connect();
  try {
    await producer.query("BEGIN");
    await queues.withClient(producer).send("mq_open_tx", { n: 1 });
    // Another producer, while that transaction is open: it must not wait for it.
    const other = await db.pool.connect();
    try {
      await other.query("SET statement_timeout = '5s'");
      await queues.withClient(other).send("mq_open_tx", { n: 2 });
    } finally {
      await other.query("RESET statement_timeout");
      other.release();
    }
    await producer.query("COMMIT");
  } finally {
    producer.release();
  }
  const listed = await db.pool.query("SELECT 1 FROM pgbus.nonempty_queues WHERE queue_name = 'mq_open_tx'");
  assert.equal(listed.rowCount, 1, "the queue is listed once the first producer committed");
});

test("pgbus.queues_with_work reaches only due rows: a queue of delayed messages costs its poll no index entries", async () => {
  const queues = new QueueClient(db.pool);
  await queues.createQueue("qw_far");
  await queues.sendBatch(
    "qw_far",
    Array.from({ length: 5_000 }, (_, n) => ({ n })),
    { delayMs: 3_600_000 },
  );
  // One connection, so the statistics read after pg_stat_force_next_flush are this session's own.
  const client = await db.pool.connect();
  try {
    const entriesRead = async () => {
      await client.query("SELECT pg_stat_force_next_flush()");
      const { rows } = await client.query(
        "SELECT coalesce(sum(idx_tup_read), 0)::int AS n FROM pg_stat_user_indexes WHERE relname = 'q_qw_far' AND indexrelname = 'q_qw_far_claim'",
      );
      return rows[0].n as number;
    };
    const before = await entriesRead();
    const { rows } = await client.query("SELECT queue_name FROM pgbus.queues_with_work($1)", [["qw_far"]]);
    assert.deepEqual(rows, [], "nothing due");
    const read = (await entriesRead()) - before;
    assert.ok(read < 100, `the poll read ${read} claim index entries of 5,000 not due`);
  } finally {
    client.release();
  }
});
