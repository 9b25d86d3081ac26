import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { PgbusError, ValidationError } from "../../src/errors.ts";
import type { BatchResult } from "../../src/jobs/batch.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { createWorkerStore } from "../../src/worker/worker-store.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

/** Batches in one process: callbacks with exact counts, sealing, many jobs finishing at once, bad input. */

let db: TestDatabase;
let bus: Pgbus;
const callbacks: Array<{ on: string; result: BatchResult }> = [];
const item = defineJob<{ n: number; fail?: boolean }>({
  name: "batch_item",
  queue: "batch_items",
  maxRetries: 1,
  backoff: { baseMs: 10, maxMs: 10, jitter: 0 },
  perform({ fail }) {
    if (fail) throw new Error("failed on purpose");
  },
});
const callback = (on: string) =>
  defineJob<BatchResult>({
    name: `batch_${on}`,
    queue: "batch_callbacks",
    perform(result) {
      callbacks.push({ on, result });
    },
  });
const onFinish = callback("finish");
const onSuccess = callback("success");
const onDead = callback("dead");

before(async () => {
  db = await createTestDatabase("batches");
  bus = new Pgbus({ connectionString: db.url, jobs: [item, onFinish, onSuccess, onDead] });
  await bus.migrate();
});
after(async () => {
  await bus.close();
  await db.drop();
});

function callbacksOf(batchId: string): Array<{ on: string; result: BatchResult }> {
  return callbacks.filter((entry) => entry.result.batchId === batchId);
}

test("callbacks run once each, with exact counts, after every job finished (dead ones after their retries)", async () => {
  const worker = bus.worker({ queues: ["batch_items", "batch_callbacks"], capacity: 20, pollIntervalMs: 50 });
  await worker.start();
  try {
    const batch = bus.batch({ onFinish, onSuccess, onDead: { job: onDead, payload: { alert: true } }, context: { order: 7 } });
    await batch.enqueueMany(
      item,
      Array.from({ length: 200 }, (_, n) => ({ n, fail: n % 50 === 0 })),
    );
    await batch.enqueue(item, { n: 200 });
    await batch.seal();
    await waitFor(() => callbacksOf(batch.id).length === 2, "two callbacks", 20_000, 10);
    const seen = callbacksOf(batch.id).sort((a, b) => a.on.localeCompare(b.on));
    assert.deepEqual(seen, [
      { on: "dead", result: { batchId: batch.id, succeeded: 197, dead: 4, total: 201, context: { alert: true } } },
      { on: "finish", result: { batchId: batch.id, succeeded: 197, dead: 4, total: 201, context: { order: 7 } } },
    ]);
    // Nothing more arrives (onSuccess is not due: some jobs are dead).
    const again = await db.pool.query("SELECT count(*)::int AS n FROM pgmq.q_batch_callbacks");
    assert.equal(again.rows[0].n, 0);
  } finally {
    await worker.stop();
  }
});

test("a batch does not finish before it is sealed, however fast its jobs run; an empty sealed batch finishes at once", async () => {
  const worker = bus.worker({ queues: ["batch_items", "batch_callbacks"], capacity: 10, pollIntervalMs: 50 });
  await worker.start();
  try {
    const batch = bus.batch({ onSuccess });
    await batch.enqueueMany(item, [{ n: 1 }, { n: 2 }]);
    await waitFor(
      async () => (await db.pool.query("SELECT succeeded FROM pgbus.batches WHERE id = $1", [batch.id])).rows[0]?.succeeded === 2,
      "both jobs done",
      10_000,
      10,
    );
    assert.equal(callbacksOf(batch.id).length, 0, "no callback before seal()");
    await batch.enqueue(item, { n: 3 });
    await batch.seal();
    await waitFor(() => callbacksOf(batch.id).length === 1, "the callback", 10_000, 10);
    assert.deepEqual(callbacksOf(batch.id)[0]!.result, { batchId: batch.id, succeeded: 3, dead: 0, total: 3, context: null });
    await assert.rejects(batch.enqueue(item, { n: 4 }), (error: unknown) => error instanceof PgbusError && error.code === "BATCH_SEALED");

    const empty = bus.batch({ onFinish, context: "empty" });
    await empty.seal();
    await empty.seal();
    await waitFor(() => callbacksOf(empty.id).length === 1, "the empty batch's callback", 10_000, 10);
    assert.deepEqual(callbacksOf(empty.id)[0]!.result, { batchId: empty.id, succeeded: 0, dead: 0, total: 0, context: "empty" });
  } finally {
    await worker.stop();
  }
});

test("the last two jobs acked at the same instant on two connections: the batch finishes once, counting both", async () => {
  const batch = bus.batch({ onFinish });
  await batch.enqueueMany(item, [{ n: 1 }, { n: 2 }]);
  await batch.seal();
  const claimed = await createWorkerStore(db.pool).claim("batch_items", 30, 10);
  assert.deepEqual(
    claimed.map((message) => message.batchId),
    [batch.id, batch.id],
  );
  const [a, b] = claimed.map((message) => ({ id: message.msgId, readCt: message.readCt }));
  const first = await db.pool.connect();
  const second = await db.pool.connect();
  try {
    await first.query("BEGIN");
    await second.query("BEGIN");
    assert.equal(await createWorkerStore(first).ackBatchJobs("batch_items", [a!], "archive"), 1);
    // The second ack waits on the batch's row until the first commits, then counts on top of it.
    const blocked = createWorkerStore(second).ackBatchJobs("batch_items", [b!], "delete");
    await waitFor(
      async () => (await db.pool.query("SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted")).rows[0].n > 0,
      "the second ack to wait for the first",
      10_000,
      10,
    );
    await first.query("COMMIT");
    assert.equal(await blocked, 1);
    await second.query("COMMIT");
  } finally {
    first.release();
    second.release();
  }
  const queued = await db.pool.query("SELECT message FROM pgmq.q_batch_callbacks");
  assert.deepEqual(
    queued.rows.map((row) => row.message),
    [{ job: "batch_finish", payload: { batchId: batch.id, succeeded: 2, dead: 0, total: 2, context: null } }],
  );
  await db.pool.query("DELETE FROM pgmq.q_batch_callbacks");
});

test("bad input: no callback, a callback that is not a job, uniqueKey, the batch header", async () => {
  const invalid = (pattern: RegExp) => (error: unknown) => error instanceof ValidationError && pattern.test(error.message);
  assert.throws(() => bus.batch({ context: 1 }), invalid(/at least one of onFinish, onSuccess, onDead/));
  assert.throws(
    () => bus.batch({ onFinish: "batch_finish" as never }),
    invalid(/onFinish must be a job made with defineJob.*the string "batch_finish"/),
  );
  assert.throws(() => bus.batch({ onDead: { job: {} } as never }), invalid(/onDead must be a job/));
  assert.throws(() => bus.batch({ onFinish, context: () => 1 }), invalid(/batch context/));
  const batch = bus.batch({ onFinish });
  await assert.rejects(batch.enqueue(item, { n: 1 }, { uniqueKey: "k" } as never), invalid(/uniqueKey cannot be used inside a batch/));
  await assert.rejects(batch.enqueue(item, { n: 1 }, { headers: { pgbus_batch: "x" } }), invalid(/pgbus_batch is pgbus's own/));
});
