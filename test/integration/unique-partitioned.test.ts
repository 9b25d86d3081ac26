import assert from "node:assert/strict";
import { type TestContext, after, before, beforeEach, describe, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { QueueClient } from "../../src/queue/client.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { createWorkerStore } from "../../src/worker/worker-store.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { enqueueOverlappingBatches, gatedJob } from "../helpers/unique-jobs.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";

/**
 * Unique jobs on partitioned queues (pg_partman), both modes: the same behaviour as on a
 * plain queue, with the keys held in pgbus.unique_keys and released by the queue's
 * triggers; a key whose message vanished without a trigger (a partition dropped by
 * retention, a truncate) is taken over by the next enqueue of it.
 */

let db: TestDatabase;
let bus: Pgbus;
let partman = false;
// By msg_id, 10 ids a partition: a few dozen messages span several partitions.
const charge = defineJob<{ order: number }>({ name: "charge", queue: "up", maxRetries: 0, async perform() {} });
const sync = defineJob<{ n: number }>({ name: "sync", queue: "up", async perform() {} });
// By time, a day a partition.
const tick = defineJob<{ n: number }>({ name: "tick", queue: "up_days", async perform() {} });
const queued = (key: string) => ({ uniqueKey: key, uniqueFor: "queued" as const });

before(async () => {
  db = await createTestDatabase("unique_partitioned");
  await migrate(db.pool);
  partman = (await db.pool.query("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_partman'")).rows.length > 0;
  if (partman) {
    // Before the bus migrates: it would make its jobs' queues plain.
    await db.pool.query("CREATE EXTENSION IF NOT EXISTS pg_partman");
    const queues = new QueueClient(db.pool);
    await queues.createQueue("up", { partitioned: { interval: 10, retention: 1_000 } });
    await queues.createQueue("up_days", { partitioned: { interval: "1 day", retention: "7 days" } });
  }
  bus = new Pgbus({ connectionString: db.url, jobs: [charge, sync, tick] });
  await bus.migrate();
});
after(async () => {
  try {
    await bus.close();
  } finally {
    await db.drop();
  }
});
beforeEach(async () => {
  if (!partman) return;
  for (const queue of ["up", "up_dlq", "up_days"]) await bus.queues.purgeQueue(queue);
  assert.deepEqual(await keyRows(), [], "a purge releases every key");
});

/** Runs a test only where pg_partman is installed. */
function partTest(name: string, body: (t: TestContext) => Promise<void>): void {
  test(name, async (t) => (partman ? body(t) : t.skip("pg_partman is not installed")));
}

const inQueueOf = async (queue: string) => Number((await db.pool.query(`SELECT count(*) AS n FROM pgmq.q_${queue}`)).rows[0].n);
const inQueue = (queue = "up") => inQueueOf(queue);
const keyRows = (queue?: string) => keyRowsOf(queue);
async function keyRowsOf(queue?: string): Promise<Array<{ job: string; key: string; id: string; until_done: boolean; waiting: boolean }>> {
  const { rows } = await db.pool.query(
    `SELECT job, unique_key AS key, msg_id::text AS id, until_done, waiting FROM pgbus.unique_keys
      WHERE $1::text IS NULL OR queue_name = $1 ORDER BY msg_id`,
    [queue ?? null],
  );
  return rows;
}

/** The message's key row is gone: its trigger released it (an enqueue would also free a stale one). */
async function assertReleased(id: string): Promise<void> {
  assert.ok(!(await keyRows()).some((row) => row.id === id), `message ${id}'s key row deleted`);
}

describe("one message per job and key on a partitioned queue", () => {
  partTest("the queue's table is partitioned and has no unique index: the keys go to pgbus.unique_keys", async () => {
    const { rows } = await db.pool.query("SELECT relkind::text FROM pg_class WHERE oid = 'pgmq.q_up'::regclass");
    assert.deepEqual(rows, [{ relkind: "p" }]);
    const id = await bus.enqueue(charge, { order: 1 }, { uniqueKey: "k" });
    assert.deepEqual(await keyRows(), [{ job: "charge", key: "k", id, until_done: true, waiting: true }]);
    const { rows: indexes } = await db.pool.query("SELECT 1 FROM pg_indexes WHERE schemaname = 'pgmq' AND indexname LIKE 'q_up_unique%'");
    assert.deepEqual(indexes, []);
  });

  for (const mode of ["until_done", "queued"] as const) {
    partTest(`${mode}: 20 concurrent enqueues of one key, from separate connections: one message, one id`, async () => {
      const producers = Array.from({ length: 20 }, () => new Pgbus({ connectionString: db.url, jobs: [charge] }));
      try {
        const ids = await Promise.all(
          producers.map((producer) => producer.enqueue(charge, { order: 1 }, { uniqueKey: `one-${mode}`, uniqueFor: mode })),
        );
        assert.equal(new Set(ids).size, 1, `one id, got ${[...new Set(ids)].join(", ")}`);
        assert.equal(await inQueue(), 1);
        assert.deepEqual(
          (await keyRows()).map((row) => row.id),
          [ids[0]],
        );
      } finally {
        await Promise.all(producers.map((producer) => producer.close()));
      }
    });
  }

  partTest("until_done: held while delayed and while claimed; released by archive, delete, DLQ move, cancel", async () => {
    const delayed = await bus.enqueue(charge, { order: 1 }, { uniqueKey: "delayed", delayMs: 60_000 });
    assert.equal(await bus.enqueue(charge, { order: 1 }, { uniqueKey: "delayed" }), delayed);
    assert.deepEqual(await bus.cancel("up", delayed), { status: "cancelled" });
    await assertReleased(delayed);
    const delayedAgain = await bus.enqueue(charge, { order: 1 }, { uniqueKey: "delayed", delayMs: 60_000 });
    assert.notEqual(delayedAgain, delayed, "cancel released it");

    const running = await bus.enqueue(charge, { order: 2 }, { uniqueKey: "running" });
    const claimed = await bus.queues.read("up", 60, 10);
    assert.ok(claimed.some((message) => message.msgId === running));
    assert.equal(await bus.enqueue(charge, { order: 2 }, { uniqueKey: "running" }), running, "held while claimed");
    assert.equal(await bus.queues.archive("up", running), true);
    await assertReleased(running);
    const second = await bus.enqueue(charge, { order: 2 }, { uniqueKey: "running" });
    assert.notEqual(second, running, "the archive released it");

    await bus.queues.delete("up", second);
    await assertReleased(second);
    const third = await bus.enqueue(charge, { order: 2 }, { uniqueKey: "running" });
    assert.notEqual(third, second, "the delete released it");

    await bus.queues.moveToDeadLetterQueue("up", third, { name: "Error", message: "boom", reason: "retries_exhausted" });
    await assertReleased(third);
    const fourth = await bus.enqueue(charge, { order: 2 }, { uniqueKey: "running" });
    assert.notEqual(fourth, third, "the DLQ move released it");
    const { rows } = await db.pool.query("SELECT headers ->> 'pgbus_unique_key' AS key FROM pgmq.q_up_dlq");
    assert.deepEqual(rows, [{ key: "running" }], "the dead letter keeps the key as a record");
    assert.deepEqual(
      (await keyRows()).map((row) => row.id),
      [delayedAgain, fourth],
    );
  });

  partTest(
    "queued: held while waiting or delayed, released by the claim; a message given back unstarted does not take it again",
    async () => {
      const delayed = await bus.enqueue(sync, { n: 1 }, { ...queued("d"), delayMs: 60_000 });
      assert.equal(await bus.enqueue(sync, { n: 1 }, queued("d")), delayed);
      const store = createWorkerStore(db.pool);
      const first = await bus.enqueue(sync, { n: 2 }, queued("k"));
      assert.equal(await bus.enqueue(sync, { n: 2 }, queued("k")), first);
      const claim = (await store.claim("up", 60, 10)).find((message) => message.msgId === first);
      assert.ok(claim);
      const second = await bus.enqueue(sync, { n: 2 }, queued("k"));
      assert.notEqual(second, first, "the claimed one no longer holds the key");
      assert.equal(await bus.enqueue(sync, { n: 2 }, queued("k")), second, "the waiting one does");
      assert.equal(await store.release("up", [{ id: first, readCt: claim.readCt }], { started: false }), 1);
      assert.equal(await bus.enqueue(sync, { n: 2 }, queued("k")), second, "the given-back one did not take it back");
      assert.equal(await inQueue(), 3);
    },
  );

  partTest('modes share a key while its messages wait; a claimed "until_done" holder blocks only "until_done" enqueues', async () => {
    const untilDone = await bus.enqueue(sync, { n: 1 }, { uniqueKey: "mix" });
    assert.equal(await bus.enqueue(sync, { n: 1 }, queued("mix")), untilDone, "waiting: held for both modes");
    await bus.queues.read("up", 60, 10);
    assert.deepEqual(await keyRows(), [{ job: "sync", key: "mix", id: untilDone, until_done: true, waiting: false }]);
    const next = await bus.enqueue(sync, { n: 1 }, queued("mix"));
    assert.notEqual(next, untilDone, "claimed: a queued enqueue goes through");
    assert.equal(await bus.enqueue(sync, { n: 1 }, { uniqueKey: "mix" }), untilDone, "an until_done one finds the oldest holder");
    await bus.queues.archive("up", untilDone);
    assert.equal(await bus.enqueue(sync, { n: 1 }, { uniqueKey: "mix" }), next, "then the waiting queued one");
  });

  partTest(
    "a real worker: until_done held while the job runs, free once it succeeded or went to the DLQ; queued free once it started",
    async () => {
      const { job: slow, started, release } = gatedJob("slow_unique", "up");
      const ok = await bus.enqueue(slow, { fail: false }, { uniqueKey: "ok" });
      const bad = await bus.enqueue(slow, { fail: true }, { uniqueKey: "bad" });
      const early = await bus.enqueue(slow, { fail: false }, queued("early"));
      const worker = bus.worker({ queues: ["up"], capacity: 5, pollIntervalMs: 50 });
      await worker.start();
      try {
        await waitFor(() => started.length === 3, "all three running");
        assert.equal(await bus.enqueue(slow, { fail: false }, { uniqueKey: "ok" }), ok, "held while running");
        assert.equal(await bus.enqueue(slow, { fail: true }, { uniqueKey: "bad" }), bad);
        const later = await bus.enqueue(slow, { fail: false }, { ...queued("early"), delayMs: 60_000 });
        assert.notEqual(later, early, "a queued key is free while its job runs");
        release();
        await waitFor(async () => (await inQueue()) === 1, "the three settled");
      } finally {
        await worker.stop();
      }
      assert.equal(await inQueue("up_dlq"), 1);
      const again = await bus.enqueueMany(slow, [{ fail: false }, { fail: true }], {
        uniqueKey: (payload) => (payload.fail ? "bad" : "ok"),
      });
      assert.ok(!again.includes(ok) && !again.includes(bad), "both keys free again");
      assert.equal(new Set(again).size, 2);
    },
  );
});

describe("enqueueMany on a partitioned queue", () => {
  partTest("duplicates in the batch and in the queue give the holder's id, in input order, across partitions", async () => {
    // A new queue: its ids start at 1, in the partitions made ahead (later ids go to the default partition).
    await bus.queues.createQueue("up_many", { partitioned: { interval: 10, retention: 1_000 } });
    const charge = defineJob<{ order: number }>({ name: "charge_many", queue: "up_many", async perform() {} });
    const inQueue = () => inQueueOf("up_many");
    const keyRows = () => keyRowsOf("up_many");
    const existing = await bus.enqueue(charge, { order: 20 }, { uniqueKey: "order-20" });
    const payloads = [{ order: 20 }, ...Array.from({ length: 24 }, (_, i) => ({ order: 21 + (i % 12) })), { order: 0 }, { order: 0 }];
    const ids = await bus.enqueueMany(charge, payloads, { uniqueKey: (p) => (p.order === 0 ? undefined : `order-${p.order}`) });
    assert.equal(ids[0], existing);
    for (let i = 1; i <= 12; i++) assert.equal(ids[i + 12], ids[i], `payload ${i + 12} is a duplicate of payload ${i}`);
    assert.equal(new Set(ids.slice(1, 13)).size, 12);
    assert.notEqual(ids[25], ids[26], "payloads without a key are not deduplicated");
    assert.equal(await inQueue(), 1 + 12 + 2);
    const { rows } = await db.pool.query(
      "SELECT msg_id::text AS id, message -> 'payload' ->> 'order' AS o, tableoid::regclass::text AS part FROM pgmq.q_up_many ORDER BY msg_id",
    );
    assert.ok(new Set(rows.map((row: { part: string }) => row.part)).size > 1, "the messages span partitions");
    const byId = new Map(rows.map((row: { id: string; o: string }) => [row.id, Number(row.o)]));
    payloads.forEach((payload, index) => assert.equal(byId.get(ids[index]!), payload.order, `payload ${index}'s id holds its order`));
    assert.equal((await keyRows()).length, 13);

    const queuedIds = await bus.enqueueMany(charge, [{ order: 1 }, { order: 1 }, { order: 2 }], {
      uniqueKey: (p) => `q${p.order}`,
      uniqueFor: "queued",
    });
    assert.equal(queuedIds[0], queuedIds[1]);
    assert.notEqual(queuedIds[0], queuedIds[2]);
    assert.equal((await keyRows()).length, 15);
    await bus.queues.dropQueue("up_many");
  });

  partTest("concurrent batches over overlapping keys: one message per key, every caller gets its id", async () => {
    const keys = await enqueueOverlappingBatches(db.url, charge);
    assert.equal(await inQueue(), keys);
    assert.equal((await keyRows()).length, keys);
  });
});

describe("transactions on a partitioned queue", () => {
  partTest("the same id twice inside the caller's transaction; a rollback releases the key", async () => {
    for (const mode of ["until_done", "queued"] as const) {
      const client = await db.pool.connect();
      try {
        await client.query("BEGIN");
        const first = await bus.enqueue(charge, { order: 10 }, { uniqueKey: "tx", uniqueFor: mode, client });
        assert.equal(await bus.enqueue(charge, { order: 10 }, { uniqueKey: "tx", uniqueFor: mode, client }), first);
        await client.query("ROLLBACK");
      } finally {
        client.release();
      }
      assert.equal(await inQueue(), 0);
      assert.deepEqual(await keyRows(), []);
    }
    await bus.enqueue(charge, { order: 10 }, { uniqueKey: "tx" });
    assert.equal(await inQueue(), 1);
  });

  partTest(
    "another producer waits for the transaction holding the key: its id after a commit, a new message after a rollback or a killed session",
    async () => {
      for (const outcome of ["COMMIT", "ROLLBACK", "terminated"] as const) {
        const client = await db.pool.connect();
        client.on("error", () => {}); // the terminated session's connection errors out
        let held: string;
        let other: Promise<string>;
        try {
          await client.query("BEGIN");
          held = await bus.enqueue(charge, { order: 11 }, { uniqueKey: `wait-${outcome}`, client });
          const pid = (await client.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
          other = bus.enqueue(charge, { order: 11 }, { uniqueKey: `wait-${outcome}` });
          // The other enqueue waits on this transaction's key row.
          await waitFor(
            async () =>
              (
                await db.pool.query(
                  "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%pgbus.unique_keys%'",
                )
              ).rows.length > 0,
            "the second enqueue waiting",
          );
          if (outcome === "terminated") await db.pool.query("SELECT pg_terminate_backend($1)", [pid]);
          else await client.query(outcome);
        } finally {
          client.release(outcome === "terminated");
        }
        const id = await other;
        if (outcome === "COMMIT") assert.equal(id, held);
        else assert.notEqual(id, held);
        const { rows } = await db.pool.query("SELECT msg_id::text AS id FROM pgmq.q_up WHERE headers ->> 'pgbus_unique_key' = $1", [
          `wait-${outcome}`,
        ]);
        assert.deepEqual(rows, [{ id }]);
        assert.deepEqual(
          (await keyRows()).filter((row) => row.key === `wait-${outcome}`).map((row) => row.id),
          [id],
        );
      }
    },
  );
});

describe("keys whose message vanished without a trigger", () => {
  partTest("a holder in a partition that pg_partman's retention dropped is taken over, by one of many concurrent enqueues", async () => {
    await bus.queues.createQueue("up_ret", { partitioned: { interval: 10, retention: 1_000 } });
    const job = defineJob<{ n: number }>({ name: "ret", queue: "up_ret", async perform() {} });
    const doneHolder = await bus.enqueue(job, { n: 1 }, { uniqueKey: "old" });
    const queuedHolder = await bus.enqueue(job, { n: 2 }, queued("old-q"));
    await bus.enqueueMany(
      job,
      Array.from({ length: 30 }, (_, n) => ({ n })),
    );
    const schema = (await db.pool.query("SELECT extnamespace::regnamespace::text AS s FROM pg_extension WHERE extname = 'pg_partman'"))
      .rows[0].s;
    await db.pool.query(
      `UPDATE ${schema}.part_config SET retention = '10', retention_keep_table = false WHERE parent_table = 'pgmq.q_up_ret'`,
    );
    const partitions = async () =>
      (
        await db.pool.query(
          `SELECT c.relname::text AS part, count(t.tgname)::int AS triggers
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname LIKE 'pgbus_unique_keys_%'
            WHERE i.inhparent = 'pgmq.q_up_ret'::regclass GROUP BY 1 ORDER BY 1`,
        )
      ).rows as Array<{ part: string; triggers: number }>;
    const before = new Set((await partitions()).map((row) => row.part));
    await db.pool.query(`SELECT ${schema}.run_maintenance('pgmq.q_up_ret')`);
    const made = (await partitions()).filter((row) => !before.has(row.part));
    assert.ok(made.length > 0, "maintenance made partitions after the key triggers");
    assert.deepEqual(
      made.filter((row) => row.triggers !== 2),
      [],
      "they have the key triggers too",
    );
    const { rows } = await db.pool.query("SELECT 1 FROM pgmq.q_up_ret WHERE msg_id = ANY($1::bigint[])", [[doneHolder, queuedHolder]]);
    assert.deepEqual(rows, [], "retention dropped the holders' partition");
    assert.deepEqual(
      (await keyRows("up_ret")).map((row) => row.id),
      [doneHolder, queuedHolder],
      "no trigger fired: the key rows are still there",
    );

    const producers = Array.from({ length: 10 }, () => new Pgbus({ connectionString: db.url, jobs: [job] }));
    try {
      const ids = await Promise.all(producers.map((producer) => producer.enqueue(job, { n: 1 }, { uniqueKey: "old" })));
      assert.equal(new Set(ids).size, 1, `one id, got ${[...new Set(ids)].join(", ")}`);
      assert.notEqual(ids[0], doneHolder);
      const taken = await bus.enqueue(job, { n: 2 }, queued("old-q"));
      assert.notEqual(taken, queuedHolder);
      assert.deepEqual(
        (await keyRows("up_ret")).map((row) => row.id),
        [ids[0], taken],
      );
    } finally {
      await Promise.all(producers.map((producer) => producer.close()));
    }
    await bus.queues.dropQueue("up_ret");
  });

  partTest("a truncated time partition: its holders' keys are taken over", async () => {
    const holder = await bus.enqueue(tick, { n: 1 }, { uniqueKey: "t" });
    assert.equal(await bus.enqueue(tick, { n: 1 }, { uniqueKey: "t" }), holder);
    const part = (await db.pool.query("SELECT tableoid::regclass::text AS part FROM pgmq.q_up_days WHERE msg_id = $1", [holder])).rows[0]
      .part;
    await db.pool.query(`TRUNCATE ${part}`);
    const next = await bus.enqueue(tick, { n: 1 }, { uniqueKey: "t" });
    assert.notEqual(next, holder);
    assert.deepEqual(
      (await keyRows("up_days")).map((row) => row.id),
      [next],
    );
    assert.equal(await bus.enqueue(tick, { n: 1 }, queued("t")), next, "held for both modes while waiting");
    await bus.queues.read("up_days", 60, 10);
    assert.notEqual(await bus.enqueue(tick, { n: 1 }, queued("t")), next, "released by the claim");
  });
});

describe("other clients and queue admin", () => {
  partTest("plain PGMQ clients: pgmq.send still works, and their delete or archive releases keys", async () => {
    await bus.enqueue(charge, { order: 1 }, { uniqueKey: "first" }); // the key triggers exist now
    const { rows } = await db.pool.query('SELECT * FROM pgmq.send(\'up\', \'{"job":"charge","payload":{"order":2}}\'::jsonb)');
    assert.equal(rows.length, 1);
    const held = await bus.enqueue(charge, { order: 3 }, { uniqueKey: "plain" });
    await db.pool.query("SELECT pgmq.delete('up', $1::bigint)", [held]);
    const again = await bus.enqueue(charge, { order: 3 }, { uniqueKey: "plain" });
    assert.notEqual(again, held);
    await db.pool.query("SELECT pgmq.archive('up', $1::bigint)", [again]);
    assert.notEqual(await bus.enqueue(charge, { order: 3 }, { uniqueKey: "plain" }), again);
    assert.equal(await inQueue(), 3);
  });

  partTest("keys of messages already in the queue are taken; dropping a queue drops its keys; its DLQ refuses keys", async () => {
    await bus.queues.createQueue("up_drop", { partitioned: { interval: 10, retention: 1_000 } });
    const job = defineJob<{ n: number }>({ name: "drop", queue: "up_drop", async perform() {} });
    // Sent with the key header by another client before the queue had its key triggers: the
    // first keyed enqueue takes the keys of the messages already there.
    const { rows } = await db.pool.query(
      `SELECT pgmq.send('up_drop', '{"job":"drop","payload":{"n":0}}'::jsonb, '{"pgbus_unique_key":"x"}'::jsonb) AS id`,
    );
    assert.equal(await bus.enqueue(job, { n: 1 }, { uniqueKey: "x" }), String(rows[0].id));
    assert.equal((await keyRows("up_drop")).length, 1);
    assert.equal(await bus.queues.dropQueue("up_drop"), true);
    assert.deepEqual(await keyRows("up_drop"), []);
    await assert.rejects(bus.queues.sendBatch("up_dlq", [{}], { uniqueKeys: ["k"] }), /up_dlq is a dead-letter queue/);
  });
});
