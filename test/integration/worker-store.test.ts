import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createWorkerStore, type WorkerStore } from "../../src/worker/worker-store.ts";
import { QueueClient } from "../../src/queue/client.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

// The worker's claim statement also acks the previous batch: these are its contracts.
let db: TestDatabase;
let queues: QueueClient;
let store: WorkerStore;

before(async () => {
  db = await createTestDatabase("worker_store");
  await migrate(db.pool);
  queues = new QueueClient(db.pool, { prepared: true });
  store = createWorkerStore(db.pool);
});
after(() => db.drop());

const ids = (messages: Array<{ msgId: string }>) => messages.map((message) => message.msgId);
const claimsOf = (messages: Array<{ msgId: string; readCt: number }>) =>
  messages.map((message) => ({ id: message.msgId, readCt: message.readCt }));

for (const mode of ["delete", "archive"] as const) {
  describe(`claim with piggybacked acks (${mode} mode)`, () => {
    const queue = `claim_${mode}`;
    before(() => queues.createQueue(queue));

    test("acks the given messages and claims the next ones, oldest first, in one statement", async () => {
      const sent = await queues.sendBatch(queue, [{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }]);
      const first = await store.claim(queue, 30, 2);
      assert.deepEqual(ids(first), sent.slice(0, 2));
      assert.deepEqual(
        first.map((message) => [message.readCt, message.message]),
        [
          [1, { n: 1 }],
          [1, { n: 2 }],
        ],
      );

      const second = await store.claim(queue, 30, 10, { claims: claimsOf(first), mode });
      assert.deepEqual(ids(second), sent.slice(2));
      const left = await db.pool.query(`SELECT msg_id::text FROM pgmq.q_${queue} ORDER BY msg_id`);
      assert.deepEqual(
        left.rows.map((row) => row.msg_id),
        sent.slice(2),
      );
      const archived = await db.pool.query(`SELECT msg_id::text FROM pgmq.a_${queue} ORDER BY msg_id`);
      assert.deepEqual(
        archived.rows.map((row) => row.msg_id),
        mode === "archive" ? sent.slice(0, 2) : [],
      );
      await store.claim(queue, 30, 0, { claims: claimsOf(second), mode });
    });

    test("a message acked by the claim is never claimed again by it, even when its VT ran out", async () => {
      const [id] = await queues.sendBatch(queue, [{ late: true }]);
      const claimed = await store.claim(queue, 30, 10);
      assert.deepEqual(ids(claimed), [id]);
      // The job outlived its VT: the message is visible again when its ack goes out.
      await queues.setVt(queue, id!, 0);
      const next = await store.claim(queue, 30, 10, { claims: claimsOf(claimed), mode });
      assert.deepEqual(next, []);
      const left = await db.pool.query(`SELECT count(*)::int AS n FROM pgmq.q_${queue}`);
      assert.equal(left.rows[0].n, 0);
    });

    test("acks of messages already gone are ignored; the claim still returns what is visible", async () => {
      const sent = await queues.sendBatch(queue, [{ n: 5 }]);
      const claimed = await store.claim(queue, 30, 10, { claims: [{ id: "999999999", readCt: 1 }], mode });
      assert.deepEqual(ids(claimed), sent);
      await store.claim(queue, 30, 0, { claims: claimsOf(claimed), mode });
    });
  });
}

describe("queue table shape: the claim index", () => {
  const shape = async (queue: string) => {
    const indexes = await db.pool.query("SELECT indexname FROM pg_indexes WHERE schemaname = 'pgmq' AND tablename = $1 ORDER BY 1", [
      `q_${queue}`,
    ]);
    const options = await db.pool.query("SELECT reloptions FROM pg_class WHERE oid = $1::regclass", [`pgmq.q_${queue}`]);
    return {
      indexes: indexes.rows.map((row) => row.indexname),
      fillfactor: (options.rows[0].reloptions ?? []).find((o: string) => o.startsWith("fillfactor=")),
    };
  };

  test("createQueue leaves the primary key and the claim index (PGMQ's vt index is redundant) and fills pages to 70%", async () => {
    await queues.createQueue("tuned");
    assert.deepEqual(await shape("tuned"), { indexes: ["q_tuned_claim", "q_tuned_pkey"], fillfactor: "fillfactor=70" });
  });

  test("a queue made with plain pgmq.create gets the claim index when pgbus takes it over", async () => {
    await db.pool.query("SELECT pgmq.create('plain_made')");
    assert.deepEqual((await shape("plain_made")).indexes, ["q_plain_made_pkey", "q_plain_made_vt_idx"]);
    await queues.createQueue("plain_made");
    assert.deepEqual(await shape("plain_made"), { indexes: ["q_plain_made_claim", "q_plain_made_pkey"], fillfactor: "fillfactor=70" });
  });
});

describe("outcomes are fenced by the claim they belong to", () => {
  const queue = "fenced";
  before(() => queues.createQueue(queue));

  /** A claim that lapsed (its worker stalled past the VT) and the live claim that replaced it. */
  async function staleAndLive() {
    const [id] = await queues.sendBatch(queue, [{ job: "x", payload: {} }]);
    const [stale] = await store.claim(queue, 30, 1);
    await queues.setVt(queue, id!, 0); // the VT lapses
    const [live] = await store.claim(queue, 30, 1);
    assert.equal(live!.msgId, id);
    assert.equal(live!.readCt, stale!.readCt + 1);
    return { stale: claimsOf([stale!])[0]!, live: claimsOf([live!])[0]! };
  }
  const row = async (id: string) =>
    (await db.pool.query(`SELECT read_ct, vt > clock_timestamp() AS hidden FROM pgmq.q_${queue} WHERE msg_id = $1`, [id])).rows[0];
  const failures = async (id: string) =>
    (await db.pool.query("SELECT count(*)::int AS n FROM pgbus.failed_jobs WHERE queue_name = $1 AND msg_id = $2", [queue, id])).rows[0].n;

  test("a stale claim's ack, retry, dead-letter, extension and release change nothing", async () => {
    const { stale, live } = await staleAndLive();
    const error = { name: "Error", message: "late" };
    assert.equal(await store.ack(queue, [stale], "archive"), 0);
    assert.equal(await store.retry(queue, stale, 0, error), false);
    assert.equal(await store.deadLetter(queue, stale, { ...error, reason: "retries_exhausted" }), false);
    assert.equal(await store.extend(new Map([[queue, [stale]]]), 30), 0);
    assert.equal(await store.release(queue, [stale], { started: true }), 0);
    assert.equal(await store.claim(queue, 30, 0, { claims: [stale], mode: "delete" }).then((rows) => rows.length), 0);
    assert.deepEqual(await row(live.id), { read_ct: live.readCt, hidden: true }, "still in the queue, under the live claim");
    assert.equal(await failures(live.id), 0, "no failure recorded against the live run");
    const dlq = await db.pool.query(`SELECT count(*)::int AS n FROM pgmq.q_${queue}_dlq`);
    assert.equal(dlq.rows[0].n, 0);
    // The live claim's outcome still lands.
    assert.equal(await store.ack(queue, [live], "archive"), 1);
    assert.equal(await row(live.id), undefined);
  });

  test("the live claim's retry, dead-letter and extension land", async () => {
    const error = { name: "Error", message: "failed" };
    const first = await staleAndLive();
    assert.equal(await store.extend(new Map([[queue, [first.live]]]), 30), 1);
    assert.equal(await store.retry(queue, first.live, 60_000, error), true);
    assert.equal(await failures(first.live.id), 1);
    const second = await staleAndLive();
    assert.equal(await store.deadLetter(queue, second.live, { ...error, reason: "retries_exhausted" }), true);
    assert.equal(await row(second.live.id), undefined);
  });

  test("releasing a message that never started undoes its claim, so it is not counted as an attempt", async () => {
    const [id] = await queues.sendBatch(queue, [{ job: "x", payload: {} }]);
    const [claimed] = await store.claim(queue, 30, 10).then((rows) => rows.filter((message) => message.msgId === id));
    assert.equal(await store.release(queue, claimsOf([claimed!]), { started: false }), 1);
    assert.deepEqual(await row(id!), { read_ct: claimed!.readCt - 1, hidden: false });
    const [again] = await store.claim(queue, 30, 10).then((rows) => rows.filter((message) => message.msgId === id));
    assert.equal(again!.readCt, claimed!.readCt, "the next claim is the same attempt");
    assert.equal(await store.release(queue, claimsOf([again!]), { started: true }), 1);
    assert.deepEqual(await row(id!), { read_ct: again!.readCt, hidden: false }, "a run given up still counts");
  });
});

describe("the claim's row locks", () => {
  /** Sessions of this database waiting for a lock. */
  const lockWaiters = async () =>
    Number(
      (
        await db.pool.query(
          "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
        )
      ).rows[0].n,
    );

  test("a row locked by another transaction is skipped, not waited for", async () => {
    await queues.createQueue("locked_rows");
    const sent = await queues.sendBatch("locked_rows", [{ n: 1 }, { n: 2 }, { n: 3 }]);
    const locker = await db.pool.connect();
    try {
      await locker.query("BEGIN");
      await locker.query("SELECT 1 FROM pgmq.q_locked_rows WHERE msg_id = $1 FOR UPDATE", [sent[0]]);
      let claimed: Array<{ msgId: string }> | undefined;
      const claim = store.claim("locked_rows", 30, 10).then((messages) => (claimed = messages));
      // Either the claim returns, or it is seen waiting for the locked row: no time limit decides.
      const outcome = await waitFor(async () => (claimed ? "returned" : (await lockWaiters()) > 0 ? "waiting" : null), "the claim");
      assert.equal(outcome, "returned", "the claim waited for a row another transaction holds");
      assert.deepEqual(ids(claimed!), sent.slice(1));
      await claim;
    } finally {
      await locker.query("ROLLBACK");
      locker.release();
    }
  });

  test("concurrent claims never hand out the same message twice", async () => {
    await queues.createQueue("contended");
    const sent = await queues.sendBatch(
      "contended",
      Array.from({ length: 400 }, (_, n) => ({ n })),
    );
    const claimers = Array.from({ length: 8 }, () => createWorkerStore(db.pool));
    const seen: string[] = [];
    await Promise.all(
      claimers.map(async (claimer) => {
        for (;;) {
          const batch = await claimer.claim("contended", 30, 7);
          if (batch.length === 0) return;
          seen.push(...ids(batch));
        }
      }),
    );
    assert.equal(seen.length, sent.length, "each message claimed exactly once");
    assert.deepEqual([...new Set(seen)].sort(), [...sent].sort());
  });
});
