import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { ValidationError } from "../../src/errors.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { retryDeadLetters } from "../../src/queue/admin.ts";
import { FIXTURE_CONFIG, cliEnv, runCli, waitFor } from "../fixtures/process/spawn.ts";
import { enqueueOverlappingBatches, gatedJob } from "../helpers/unique-jobs.ts";
import { type TestDatabase, createTestDatabase, testServerAddress } from "../helpers/db.ts";
import { startTcpProxy } from "../helpers/tcp-proxy.ts";

/**
 * Idempotent enqueue (`uniqueKey`): while a message of a job with a key is in its queue
 * (waiting, delayed or running), enqueueing the same job and key inserts nothing and
 * returns the existing id; the key is released when the message leaves the queue. What a
 * caller retrying after a connection error relies on.
 */

let db: TestDatabase;
let bus: Pgbus;
const charge = defineJob<{ order: number }>({ name: "charge", queue: "uniq", maxRetries: 0, async perform() {} });
const refund = defineJob<{ order: number }>({ name: "refund", queue: "uniq", async perform() {} });

before(async () => {
  db = await createTestDatabase("unique_enqueue");
  bus = new Pgbus({ connectionString: db.url, jobs: [charge, refund] });
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
  await bus.queues.purgeQueue("uniq");
  await bus.queues.purgeQueue("uniq_dlq");
});

const inQueue = async () => Number((await db.pool.query("SELECT count(*) AS n FROM pgmq.q_uniq")).rows[0].n);

describe("one message per job and key while it is in the queue", () => {
  test("20 concurrent enqueues of one key, from separate connections: one message, one id", async () => {
    const producers = Array.from({ length: 20 }, () => new Pgbus({ connectionString: db.url, jobs: [charge] }));
    try {
      const ids = await Promise.all(producers.map((producer) => producer.enqueue(charge, { order: 1 }, { uniqueKey: "order-1" })));
      assert.equal(new Set(ids).size, 1, `one id, got ${[...new Set(ids)].join(", ")}`);
      assert.equal(await inQueue(), 1);
      const { rows } = await db.pool.query("SELECT msg_id::text AS id, headers FROM pgmq.q_uniq");
      assert.equal(rows[0].id, ids[0]);
      assert.deepEqual(rows[0].headers, { pgbus_unique_key: "order-1" });
    } finally {
      await Promise.all(producers.map((producer) => producer.close()));
    }
  });

  test("the key is per job: another job, or another key, gets its own message", async () => {
    const a = await bus.enqueue(charge, { order: 2 }, { uniqueKey: "k" });
    const b = await bus.enqueue(refund, { order: 2 }, { uniqueKey: "k" });
    const c = await bus.enqueue(charge, { order: 3 }, { uniqueKey: "k2" });
    const d = await bus.enqueue(charge, { order: 2 }); // no key: never deduplicated
    const e = await bus.enqueue(charge, { order: 2 });
    assert.equal(new Set([a, b, c, d, e]).size, 5);
    assert.equal(await bus.enqueue(charge, { order: 99 }, { uniqueKey: "k" }), a, "the existing id, whatever the payload");
    assert.equal(await inQueue(), 5);
  });

  test("a delayed message and a running (claimed) one hold their key", async () => {
    const delayed = await bus.enqueue(charge, { order: 4 }, { uniqueKey: "delayed", delayMs: 60_000 });
    assert.equal(await bus.enqueue(charge, { order: 4 }, { uniqueKey: "delayed" }), delayed);
    const running = await bus.enqueue(charge, { order: 5 }, { uniqueKey: "running" });
    const [claimed] = await bus.queues.read("uniq", 60, 10);
    assert.equal(claimed!.msgId, running);
    assert.equal(await bus.enqueue(charge, { order: 5 }, { uniqueKey: "running" }), running);
    assert.equal(await inQueue(), 2);
  });

  test("released when the message leaves the queue: archived, deleted, dead-lettered", async () => {
    const first = await bus.enqueue(charge, { order: 6 }, { uniqueKey: "archived" });
    assert.equal(await bus.queues.archive("uniq", first), true);
    const second = await bus.enqueue(charge, { order: 6 }, { uniqueKey: "archived" });
    assert.notEqual(second, first);

    const deleted = await bus.enqueue(charge, { order: 7 }, { uniqueKey: "deleted" });
    await bus.queues.delete("uniq", deleted);
    assert.notEqual(await bus.enqueue(charge, { order: 7 }, { uniqueKey: "deleted" }), deleted);

    const dead = await bus.enqueue(charge, { order: 8 }, { uniqueKey: "dead" });
    await bus.queues.moveToDeadLetterQueue("uniq", dead, { name: "Error", message: "boom", reason: "retries_exhausted" });
    const fresh = await bus.enqueue(charge, { order: 8 }, { uniqueKey: "dead" });
    assert.notEqual(fresh, dead);
    // The dead letter keeps the key as a record; retried from the DLQ it comes back without it
    // (the live message holds the key), instead of the retry failing.
    const { rows } = await db.pool.query("SELECT headers ->> 'pgbus_unique_key' AS key FROM pgmq.q_uniq_dlq");
    assert.deepEqual(rows, [{ key: "dead" }]);
    const { requeued } = await retryDeadLetters(db.pool, "uniq", { all: true });
    assert.equal(requeued.length, 1);
    assert.equal(await bus.enqueue(charge, { order: 8 }, { uniqueKey: "dead" }), fresh);
  });

  test("a real worker: the key is held while the job waits and runs, free again once it succeeded or went to the DLQ", async () => {
    const { job: slow, started, release } = gatedJob("slow_unique", "uniq");
    const ok = await bus.enqueue(slow, { fail: false }, { uniqueKey: "ok" });
    const bad = await bus.enqueue(slow, { fail: true }, { uniqueKey: "bad" });
    const worker = bus.worker({ queues: ["uniq"], capacity: 5, pollIntervalMs: 50 });
    await worker.start();
    try {
      await waitFor(() => started.length === 2, "both running");
      assert.equal(await bus.enqueue(slow, { fail: false }, { uniqueKey: "ok" }), ok, "held while running");
      assert.equal(await bus.enqueue(slow, { fail: true }, { uniqueKey: "bad" }), bad);
      release();
      await waitFor(async () => (await inQueue()) === 0, "both settled");
    } finally {
      await worker.stop();
    }
    assert.equal(Number((await db.pool.query("SELECT count(*) AS n FROM pgmq.q_uniq_dlq")).rows[0].n), 1);
    const again = await bus.enqueueMany(slow, [{ fail: false }, { fail: true }], { uniqueKey: (payload) => (payload.fail ? "bad" : "ok") });
    assert.ok(!again.includes(ok) && !again.includes(bad), "both keys free again");
    assert.equal(new Set(again).size, 2);
  });
});

describe("inside the caller's transaction", () => {
  test("a second enqueue in the same transaction gets the same id; a rollback releases the key", async () => {
    const client = await db.pool.connect();
    try {
      await client.query("BEGIN");
      const first = await bus.enqueue(charge, { order: 10 }, { uniqueKey: "tx", client });
      assert.equal(await bus.enqueue(charge, { order: 10 }, { uniqueKey: "tx", client }), first);
      await client.query("ROLLBACK");
    } finally {
      client.release();
    }
    assert.equal(await inQueue(), 0);
    await bus.enqueue(charge, { order: 10 }, { uniqueKey: "tx" });
    assert.equal(await inQueue(), 1);
  });

  test("another producer waits for the transaction holding the key: its id after a commit, a new message after a rollback", async () => {
    for (const outcome of ["COMMIT", "ROLLBACK"] as const) {
      const client = await db.pool.connect();
      let held: string;
      let other: Promise<string>;
      try {
        await client.query("BEGIN");
        held = await bus.enqueue(charge, { order: 11 }, { uniqueKey: `wait-${outcome}`, client });
        other = bus.enqueue(charge, { order: 11 }, { uniqueKey: `wait-${outcome}` });
        // The other INSERT waits on this transaction's row lock.
        await waitFor(
          async () =>
            (
              await db.pool.query(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%ON CONFLICT%'",
              )
            ).rows.length > 0,
          "the second enqueue waiting",
        );
        await client.query(outcome);
      } finally {
        client.release();
      }
      const id = await other;
      if (outcome === "COMMIT") assert.equal(id, held);
      else assert.notEqual(id, held);
      assert.equal(
        Number(
          (await db.pool.query("SELECT count(*) AS n FROM pgmq.q_uniq WHERE headers ->> 'pgbus_unique_key' = $1", [`wait-${outcome}`]))
            .rows[0].n,
        ),
        1,
      );
    }
  });

  test("a queue created inside the caller's transaction gets its unique index there too", async () => {
    const fresh = defineJob<{ n: number }>({ name: "fresh_unique", queue: "uniq_fresh", async perform() {} });
    const other = new Pgbus({ connectionString: db.url });
    const client = await db.pool.connect();
    try {
      await client.query("BEGIN");
      const id = await other.enqueue(fresh, { n: 1 }, { uniqueKey: "f", client });
      assert.equal(await other.enqueue(fresh, { n: 1 }, { uniqueKey: "f", client }), id);
      await client.query("COMMIT");
      assert.equal(await other.enqueue(fresh, { n: 2 }, { uniqueKey: "f" }), id);
    } finally {
      client.release();
      await other.close();
    }
  });
});

describe("enqueueMany", () => {
  test("keys per payload from a function: duplicates in the batch and in the queue give the holder's id, in input order", async () => {
    const existing = await bus.enqueue(charge, { order: 20 }, { uniqueKey: "order-20" });
    const payloads = [{ order: 20 }, { order: 21 }, { order: 22 }, { order: 21 }, { order: 0 }, { order: 0 }];
    const ids = await bus.enqueueMany(charge, payloads, { uniqueKey: (p) => (p.order === 0 ? undefined : `order-${p.order}`) });
    assert.equal(ids.length, 6);
    assert.equal(ids[0], existing);
    assert.equal(ids[3], ids[1], "the batch's own duplicate");
    assert.notEqual(ids[2], ids[1]);
    assert.notEqual(ids[4], ids[5], "payloads without a key are not deduplicated");
    assert.equal(await inQueue(), 5, "20 (before), 21, 22 and two without a key");
    const rows = (await db.pool.query("SELECT msg_id::text AS id, message -> 'payload' ->> 'order' AS o FROM pgmq.q_uniq ORDER BY msg_id"))
      .rows;
    const byId = new Map(rows.map((row: { id: string; o: string }) => [row.id, Number(row.o)]));
    payloads.forEach((payload, index) => assert.equal(byId.get(ids[index]!), payload.order, `payload ${index}'s id holds its order`));
  });

  test("one string key for a whole batch: one message, its id for every payload", async () => {
    const ids = await bus.enqueueMany(charge, [{ order: 30 }, { order: 31 }], { uniqueKey: "batch" });
    assert.equal(ids[0], ids[1]);
    assert.equal(await inQueue(), 1);
  });

  test("concurrent batches over overlapping keys: one message per key, every caller gets its id", async () => {
    const keys = await enqueueOverlappingBatches(db.url, charge);
    assert.equal(await inQueue(), keys);
  });
});

describe("retrying after a connection error", () => {
  /**
   * Enqueues through a TCP proxy, cuts the connection while the INSERT waits on a table
   * lock (the server runs and commits it anyway once the lock is free), then retries the
   * same enqueue as a caller would. Returns the retry's id and the order-`n` messages in the queue.
   */
  async function lostThenRetried(order: number, uniqueKey?: string): Promise<{ id: string; queued: string[] }> {
    const proxy = await startTcpProxy(await testServerAddress());
    const producer = new Pgbus({ connectionString: proxy.urlFor(db.url), jobs: [charge] });
    const locker = await db.pool.connect();
    try {
      await producer.enqueue(charge, { order: -1 }, { uniqueKey: `warm-up-${order}` }); // queue and index known: the next call is one INSERT
      await locker.query("BEGIN");
      await locker.query("LOCK TABLE pgmq.q_uniq IN SHARE ROW EXCLUSIVE MODE");
      const lost = producer.enqueue(charge, { order }, { uniqueKey });
      lost.catch(() => {});
      await waitFor(
        async () =>
          (
            await db.pool.query(
              "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO%'",
            )
          ).rows.length > 0,
        "the INSERT waiting on the lock",
      );
      proxy.cut();
      await assert.rejects(lost, (error: unknown) => !(error instanceof ValidationError), "the caller sees a connection error");
      proxy.restore();
      const retry = producer.enqueue(charge, { order }, { uniqueKey }); // while the orphaned INSERT is still pending
      await locker.query("COMMIT");
      const id = await retry;
      // The orphaned INSERT runs once the lock is free; wait until no INSERT is left waiting.
      await waitFor(
        async () =>
          (
            await db.pool.query(
              "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'INSERT INTO pgmq%' AND state = 'active'",
            )
          ).rows.length === 0,
        "the orphaned INSERT done",
      );
      const { rows } = await db.pool.query(
        "SELECT msg_id::text AS id FROM pgmq.q_uniq WHERE message -> 'payload' ->> 'order' = $1 ORDER BY msg_id",
        [String(order)],
      );
      return { id, queued: rows.map((row: { id: string }) => row.id) };
    } finally {
      await locker.query("ROLLBACK").catch(() => {});
      locker.release();
      await producer.close();
      await proxy.close();
    }
  }

  test("without a key, the retry duplicates the job: the INSERT whose connection died had committed", async () => {
    const { queued } = await lostThenRetried(51);
    assert.equal(queued.length, 2);
  });

  test("with a key, the retry gets the message of the INSERT that committed, and nothing is duplicated", async () => {
    const { id, queued } = await lostThenRetried(52, "order-52");
    assert.deepEqual(queued, [id]);
  });
});

describe("the queue client", () => {
  test("sendBatch with uniqueKeys works on any queue (its index made on first use), for bodies with or without a job", async () => {
    await bus.queues.createQueue("uniq_raw");
    const [a, b, c] = await bus.queues.sendBatch("uniq_raw", [{ job: "x" }, { job: "y" }, [1, 2]], { uniqueKeys: ["k", "k", "k"] });
    assert.equal(new Set([a, b, c]).size, 3, "the key is per job; a body without one counts as job ''");
    const again = await bus.queues.sendBatch("uniq_raw", [{ job: "x", other: 1 }, "text"], {
      uniqueKeys: ["k", "k"],
      headers: [{ trace: "t1" }, { trace: "t2" }],
    });
    assert.deepEqual(again, [a, c]);
    await assert.rejects(bus.queues.sendBatch("uniq_dlq", [{}], { uniqueKeys: ["k"] }), /uniq_dlq is a dead-letter queue/);
    await assert.rejects(
      bus.queues.sendBatch("uniq_raw", [{}, {}], { uniqueKeys: ["k"] }),
      (error: unknown) => error instanceof ValidationError && /uniqueKeys has 1 entries for 2 messages/.test(error.message),
    );
  });
});

describe("the CLI", () => {
  test("pgbus enqueue --unique-key prints the holder's id the second time, for a known job and for a bare one", async () => {
    const env = cliEnv(db.url);
    const pgbus = (...args: string[]) => runCli(["--config", FIXTURE_CONFIG, ...args], env);
    for (const args of [
      ["record", '{"n":1}'],
      ["bare_job", "[1]", "--queue", "uniq"],
    ]) {
      const first = await pgbus("enqueue", ...args, "--unique-key", "cli-1");
      assert.equal(first.code, 0, first.stderr);
      const second = await pgbus("enqueue", ...args, "--unique-key", "cli-1");
      assert.equal(second.code, 0, second.stderr);
      assert.match(first.stdout.trim(), /^\d+$/);
      assert.equal(second.stdout.trim(), first.stdout.trim(), `same id for ${args[0]}`);
    }
    const bad = await pgbus("enqueue", "bare_job", "[1]", "--queue", "uniq", "--unique-key", "");
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--unique-key must be a string of 1 to 512 characters/);
  });
});

describe("bad keys", () => {
  test("refused with a ValidationError before any SQL", async () => {
    const bad: unknown[] = ["", 42, "x".repeat(513), "nul\u0000", "😀".slice(0, 1)];
    for (const key of bad) {
      await assert.rejects(
        bus.enqueue(charge, { order: 1 }, { uniqueKey: key as string }),
        (error: unknown) =>
          error instanceof ValidationError &&
          error.code === "INVALID_OPTION" &&
          /uniqueKey must be a string of 1 to 512/.test(error.message),
        `key ${String(key).slice(0, 20)}`,
      );
    }
    await assert.rejects(
      bus.enqueueMany(charge, [{ order: 1 }], { uniqueKey: () => 7 as unknown as string }),
      (error: unknown) => error instanceof ValidationError && /uniqueKey of payload 0 must be a string/.test(error.message),
    );
    await assert.rejects(
      bus.enqueue(charge, { order: 1 }, { headers: { pgbus_unique_key: "x" } }),
      (error: unknown) => error instanceof ValidationError && /give the key as the uniqueKey option/.test(error.message),
    );
    assert.equal(await inQueue(), 0);
  });

  test("the queue's index exists only once a key was used", async () => {
    const plain = defineJob<{ n: number }>({ name: "plain_job", queue: "uniq_plain", async perform() {} });
    await bus.enqueue(plain, { n: 1 });
    const index = async () => (await db.pool.query("SELECT to_regclass('pgmq.q_uniq_plain_unique_key') AS r")).rows[0].r;
    assert.equal(await index(), null);
    await bus.enqueue(plain, { n: 2 }, { uniqueKey: "a" });
    assert.equal(await index(), "pgmq.q_uniq_plain_unique_key");
    // Claims are no longer HOT updates: they move the VT, which the claim index holds (migration 0010).
    assert.equal((await bus.queues.read("uniq_plain", 30, 2)).length, 2);
  });
});
