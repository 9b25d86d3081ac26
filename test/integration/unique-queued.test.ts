import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { ValidationError } from "../../src/errors.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { retryDeadLetters } from "../../src/queue/admin.ts";
import { createWorkerStore } from "../../src/worker/worker-store.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";

/**
 * Unique jobs held only while queued (`uniqueFor: "queued"`): the key blocks another
 * enqueue while its message waits or is delayed, and is released when a worker claims it.
 */

let db: TestDatabase;
let bus: Pgbus;
const sync = defineJob<{ n: number }>({ name: "sync", queue: "uq", async perform() {} });
const queued = (key: string) => ({ uniqueKey: key, uniqueFor: "queued" as const });

before(async () => {
  db = await createTestDatabase("unique_queued");
  bus = new Pgbus({ connectionString: db.url, jobs: [sync] });
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
  await bus.queues.purgeQueue("uq");
});

const inQueue = async () => Number((await db.pool.query("SELECT count(*) AS n FROM pgmq.q_uq")).rows[0].n);

describe('uniqueFor: "queued"', () => {
  test("20 concurrent enqueues of one key, from separate connections: one message, one id", async () => {
    const producers = Array.from({ length: 20 }, () => new Pgbus({ connectionString: db.url, jobs: [sync] }));
    try {
      const ids = await Promise.all(producers.map((producer) => producer.enqueue(sync, { n: 1 }, queued("one"))));
      assert.equal(new Set(ids).size, 1, `one id, got ${[...new Set(ids)].join(", ")}`);
      assert.equal(await inQueue(), 1);
      const { rows } = await db.pool.query("SELECT msg_id::text AS id, headers FROM pgmq.q_uq");
      assert.deepEqual(rows, [{ id: ids[0], headers: { pgbus_unique_queued_key: "one" } }]);
    } finally {
      await Promise.all(producers.map((producer) => producer.close()));
    }
  });

  test("a dead letter retried while another message waits with its key comes back without the key, instead of the retry failing", async () => {
    const dead = await bus.enqueue(sync, { n: 3 }, queued("retried"));
    await bus.queues.moveToDeadLetterQueue("uq", dead, { name: "Error", message: "boom", reason: "retries_exhausted" });
    const waiting = await bus.enqueue(sync, { n: 3 }, queued("retried"));
    const { requeued } = await retryDeadLetters(db.pool, "uq", { all: true });
    assert.equal(requeued.length, 1);
    const { rows } = await db.pool.query("SELECT msg_id::text AS id, headers FROM pgmq.q_uq ORDER BY msg_id");
    assert.deepEqual(rows, [
      { id: waiting, headers: { pgbus_unique_queued_key: "retried" } },
      { id: requeued[0], headers: null },
    ]);
    await bus.queues.purgeQueue("uq_dlq");
  });

  test("held while waiting or delayed, released by the claim: a new one can be enqueued while the first runs", async () => {
    const delayed = await bus.enqueue(sync, { n: 1 }, { ...queued("d"), delayMs: 60_000 });
    assert.equal(await bus.enqueue(sync, { n: 1 }, queued("d")), delayed);
    const first = await bus.enqueue(sync, { n: 2 }, queued("k"));
    assert.equal(await bus.enqueue(sync, { n: 2 }, queued("k")), first);
    const [claimed] = await bus.queues.read("uq", 60, 10);
    assert.equal(claimed!.msgId, first);
    const second = await bus.enqueue(sync, { n: 2 }, queued("k"));
    assert.notEqual(second, first, "the claimed one no longer holds the key");
    assert.equal(await bus.enqueue(sync, { n: 2 }, queued("k")), second, "the waiting one does");
    assert.equal(await inQueue(), 3);
  });

  test("a real worker: while the job runs another is enqueued, and only one waits at a time", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const runs: string[] = [];
    const slow = defineJob<{ n: number }>({
      name: "slow_queued",
      queue: "uq",
      async perform(_payload, ctx) {
        runs.push(ctx.messageId);
        await gate;
      },
    });
    const first = await bus.enqueue(slow, { n: 1 }, queued("r"));
    const worker = bus.worker({ queues: ["uq"], capacity: 1, prefetch: 0, pollIntervalMs: 50 });
    await worker.start();
    try {
      await waitFor(() => runs.length === 1, "the first running");
      const second = await bus.enqueue(slow, { n: 2 }, queued("r"));
      assert.notEqual(second, first);
      assert.equal(await bus.enqueue(slow, { n: 3 }, queued("r")), second);
      release();
      await waitFor(async () => (await inQueue()) === 0, "both done");
      assert.deepEqual(runs, [first, second]);
    } finally {
      await worker.stop();
    }
  });

  test("inside the caller's transaction: the same id twice, and a rollback releases the key", async () => {
    const client = await db.pool.connect();
    try {
      await client.query("BEGIN");
      const first = await bus.enqueue(sync, { n: 1 }, { ...queued("tx"), client });
      assert.equal(await bus.enqueue(sync, { n: 1 }, { ...queued("tx"), client }), first);
      await client.query("ROLLBACK");
    } finally {
      client.release();
    }
    assert.equal(await inQueue(), 0);
    await bus.enqueue(sync, { n: 1 }, queued("tx"));
    assert.equal(await inQueue(), 1);
  });

  test("enqueueMany: duplicates in the batch and in the queue get the holder's id, in input order", async () => {
    const held = await bus.enqueue(sync, { n: 0 }, queued("k0"));
    const ids = await bus.enqueueMany(sync, [{ n: 0 }, { n: 1 }, { n: 1 }, { n: 2 }], {
      uniqueKey: (payload) => `k${payload.n}`,
      uniqueFor: "queued",
    });
    assert.equal(ids[0], held);
    assert.equal(ids[1], ids[2]);
    assert.equal(new Set(ids).size, 3);
    assert.equal(await inQueue(), 3);
  });

  test("nothing leaks: a message gone frees its key, and one given back unstarted does not take it again", async () => {
    const gone = await bus.enqueue(sync, { n: 1 }, queued("gone"));
    await bus.queues.delete("uq", gone);
    assert.notEqual(await bus.enqueue(sync, { n: 1 }, queued("gone")), gone);

    // A worker claims a message, then gives it back unstarted (its claim undone): a newer
    // message took the key meanwhile, and the give-back must neither fail nor steal it.
    const store = createWorkerStore(db.pool);
    const first = await bus.enqueue(sync, { n: 2 }, queued("back"));
    const claim = (await store.claim("uq", 60, 10)).find((claimed) => claimed.msgId === first);
    assert.ok(claim);
    const newer = await bus.enqueue(sync, { n: 2 }, queued("back"));
    assert.equal(await store.release("uq", [{ id: first, readCt: claim.readCt }], { started: false }), 1);
    assert.equal(await bus.enqueue(sync, { n: 2 }, queued("back")), newer);
  });

  test('modes share a key while its messages wait; a claimed "until_done" holder blocks only "until_done" enqueues', async () => {
    const waitingQueued = await bus.enqueue(sync, { n: 1 }, queued("mix"));
    assert.equal(await bus.enqueue(sync, { n: 1 }, { uniqueKey: "mix" }), waitingQueued);
    await bus.queues.delete("uq", waitingQueued);

    const untilDone = await bus.enqueue(sync, { n: 2 }, { uniqueKey: "mix" });
    assert.equal(await bus.enqueue(sync, { n: 2 }, queued("mix")), untilDone, "waiting: held for both modes");
    await bus.queues.read("uq", 60, 10);
    const next = await bus.enqueue(sync, { n: 2 }, queued("mix"));
    assert.notEqual(next, untilDone, "claimed: a queued enqueue goes through");
    assert.equal(await bus.enqueue(sync, { n: 2 }, { uniqueKey: "mix" }), untilDone, "an until_done one still finds the running holder");
  });

  test("bad uniqueFor values, and uniqueFor without a key, are ValidationErrors naming the value", async () => {
    for (const bad of ["forever", "", 1, null]) {
      await assert.rejects(
        bus.enqueue(sync, { n: 1 }, { uniqueKey: "x", uniqueFor: bad as never }),
        (error: unknown) =>
          error instanceof ValidationError &&
          error.code === "INVALID_OPTION" &&
          /uniqueFor must be one of "until_done", "queued", got/.test(error.message),
      );
    }
    await assert.rejects(
      bus.enqueue(sync, { n: 1 }, { uniqueFor: "queued" }),
      (error: unknown) => error instanceof ValidationError && /needs a uniqueKey/.test(error.message),
    );
    await assert.rejects(
      bus.enqueue(sync, { n: 1 }, { headers: { pgbus_unique_queued_key: "x" } }),
      (error: unknown) => error instanceof ValidationError && /pgbus_unique_queued_key is pgbus's own/.test(error.message),
    );
    assert.equal(await inQueue(), 0);
  });

  test("the queued-key index is made on first use only", async () => {
    const plain = defineJob<{ n: number }>({ name: "plain_q", queue: "uq_plain", async perform() {} });
    const index = async () => (await db.pool.query("SELECT to_regclass('pgmq.q_uq_plain_unique_queued') AS r")).rows[0].r;
    await bus.enqueue(plain, { n: 1 }, { uniqueKey: "a" });
    assert.equal(await index(), null);
    await bus.enqueue(plain, { n: 2 }, { uniqueKey: "b", uniqueFor: "queued" });
    assert.equal(await index(), "pgmq.q_uq_plain_unique_queued");
  });
});
