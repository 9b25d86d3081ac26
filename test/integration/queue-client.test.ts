import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ValidationError } from "../../src/errors.ts";
import { QueueClient } from "../../src/queue/client.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

let db: TestDatabase;
let queues: QueueClient;

before(async () => {
  db = await createTestDatabase("queue_client");
  await migrate(db.pool);
  queues = new QueueClient(db.pool, { prepared: true });
});
after(() => db.drop());

describe("queue lifecycle", () => {
  test("createQueue makes the queue and its DLQ; listQueues shows both; dropQueue removes both", async () => {
    await queues.createQueue("life");
    await queues.createQueue("life"); // idempotent
    const names = (await queues.listQueues()).map((q) => q.name);
    assert.ok(names.includes("life") && names.includes("life_dlq"));
    assert.equal(await queues.dropQueue("life"), true);
    assert.equal(await queues.dropQueue("life"), false);
    const after = (await queues.listQueues()).map((q) => q.name);
    assert.ok(!after.includes("life") && !after.includes("life_dlq"));
  });

  test("purgeQueue deletes every message and says how many", async () => {
    await queues.createQueue("purge_me");
    await queues.sendBatch("purge_me", [1, 2, 3]);
    assert.equal(await queues.purgeQueue("purge_me"), 3);
    assert.equal((await queues.metrics("purge_me")).queueLength, 0);
  });
});

describe("send and read", () => {
  before(() => queues.createQueue("basic"));

  test("send returns an id; read returns the message with read_ct 1 and hides it for vt", async () => {
    const id = await queues.send("basic", { hello: "world" }, { headers: { trace: "t1" } });
    const [message] = await queues.read("basic", 30, 10);
    assert.equal(message?.msgId, id);
    assert.deepEqual(message?.message, { hello: "world" });
    assert.deepEqual(message?.headers, { trace: "t1" });
    assert.equal(message?.readCt, 1);
    // Hidden for 30 s from the read (both times are PostgreSQL's, so no clock of ours is involved).
    assert.ok(message!.vt.getTime() - message!.lastReadAt!.getTime() >= 29_000, `vt ${message!.vt.toISOString()}`);
    assert.deepEqual(await queues.read("basic", 30, 10), []);
    await queues.delete("basic", id);
  });

  test("a message whose VT ran out is read again with read_ct incremented", async () => {
    const id = await queues.send("basic", { again: true });
    const [first] = await queues.read("basic", 0.2, 1);
    assert.equal(first?.readCt, 1);
    // Read again as soon as its 0.2 s VT has run out.
    const [second] = await waitFor(async () => {
      const messages = await queues.read("basic", 30, 1);
      return messages.length > 0 ? messages : null;
    }, "the VT to run out");
    assert.equal(second?.msgId, id);
    assert.equal(second?.readCt, 2);
    assert.ok(second!.lastReadAt instanceof Date);
    await queues.delete("basic", id);
  });

  test("delayMs and runAt keep a message invisible until due", async () => {
    const delayed = await queues.send("basic", { d: 1 }, { delayMs: 60_000 });
    const scheduled = await queues.send("basic", { d: 2 }, { runAt: new Date(Date.now() + 60_000) });
    assert.deepEqual(await queues.read("basic", 30, 10), []);
    await queues.setVt("basic", delayed, 0);
    const visible = await queues.read("basic", 30, 10);
    assert.deepEqual(
      visible.map((m) => m.msgId),
      [delayed],
    );
    await queues.delete("basic", [delayed, scheduled]);
  });

  test("pop reads and deletes the oldest visible message", async () => {
    const a = await queues.send("basic", "a");
    const b = await queues.send("basic", "b");
    assert.equal((await queues.pop("basic"))?.msgId, a);
    assert.equal((await queues.pop("basic"))?.msgId, b);
    assert.equal(await queues.pop("basic"), null);
  });

  test("setVt returns null for a message that is gone", async () => {
    assert.equal(await queues.setVt("basic", 999_999, 10), null);
  });
});

describe("archive, delete and dead-letter", () => {
  before(() => queues.createQueue("acks"));

  test("archive moves the row to a_<queue> with archived_at; one id and arrays", async () => {
    const [one, two, three] = await queues.sendBatch("acks", [{ n: 1 }, { n: 2 }, { n: 3 }]);
    assert.equal(await queues.archive("acks", one!), true);
    assert.deepEqual((await queues.archive("acks", [two!, three!])).sort(), [two, three].sort());
    assert.equal(await queues.archive("acks", one!), false);
    const archived = await db.pool.query("SELECT a.msg_id::text, a.archived_at, a.message FROM pgmq.a_acks a ORDER BY a.msg_id");
    assert.deepEqual(
      archived.rows.map((r) => r.msg_id),
      [one, two, three],
    );
    assert.ok(archived.rows.every((r) => r.archived_at instanceof Date));
    assert.equal((await queues.metrics("acks")).queueLength, 0);
  });

  test("delete removes one id or many; false/[] for missing ids", async () => {
    const ids = await queues.sendBatch("acks", ["x", "y", "z"]);
    assert.equal(await queues.delete("acks", ids[0]!), true);
    assert.deepEqual((await queues.delete("acks", [ids[1]!, ids[2]!, "999999"])).sort(), [ids[1], ids[2]].sort());
    assert.equal(await queues.delete("acks", ids[0]!), false);
  });

  test("moveToDeadLetterQueue moves the message with its error to <queue>_dlq in one statement", async () => {
    const id = await queues.send("acks", { job: "boom" }, { headers: { origin: "test" } });
    const dlqId = await queues.moveToDeadLetterQueue("acks", id, { name: "Error", message: "kaput" });
    assert.ok(dlqId);
    assert.equal((await queues.metrics("acks")).queueLength, 0);
    const [dead] = await queues.read("acks_dlq", 30, 1);
    assert.deepEqual(dead?.message, { job: "boom" });
    assert.equal(dead?.headers?.origin, "test");
    assert.deepEqual((dead?.headers?.pgbus_error as { message: string }).message, "kaput");
    assert.equal(dead?.headers?.pgbus_source_msg_id, id);
    assert.equal(await queues.moveToDeadLetterQueue("acks", id, { name: "Error", message: "again" }), null);
  });
});

describe("metrics", () => {
  test("depth, visible depth, ages and total messages", async () => {
    await queues.createQueue("measured");
    const empty = await queues.metrics("measured");
    assert.equal(empty.queueLength, 0);
    assert.equal(empty.totalMessages, 0);
    assert.equal(empty.oldestMsgAgeSec, null);
    await queues.sendBatch("measured", [1, 2, 3, 4]);
    await queues.read("measured", 30, 1);
    await queues.pop("measured");
    const m = await queues.metrics("measured");
    assert.equal(m.queueLength, 3);
    assert.equal(m.visibleLength, 2);
    assert.equal(m.totalMessages, 4);
    assert.ok(m.oldestMsgAgeSec !== null && m.oldestMsgAgeSec >= 0);
    assert.ok(m.scrapeTime instanceof Date);
  });
});

describe("concurrency and batches", () => {
  test("20 concurrent readers over 10,000 messages get each message exactly once", async () => {
    await queues.createQueue("race");
    const sent = await queues.sendBatch(
      "race",
      Array.from({ length: 10_000 }, (_, i) => ({ i })),
    );
    const seen: string[] = [];
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        while (true) {
          const batch = await queues.read("race", 60, 50);
          if (batch.length === 0) return;
          seen.push(...batch.map((m) => m.msgId));
        }
      }),
    );
    assert.equal(seen.length, 10_000);
    assert.equal(new Set(seen).size, 10_000);
    assert.deepEqual(new Set(seen), new Set(sent));
  });

  test("sendBatch of 10,000 payloads is one round trip and keeps input order", async () => {
    await queues.createQueue("bulk");
    const statements: string[] = [];
    const counting = { query: (text: string, values?: unknown[]) => (statements.push(text), db.pool.query(text, values)) };
    const ids = await queues.withClient(counting).sendBatch(
      "bulk",
      Array.from({ length: 10_000 }, (_, i) => ({ i })),
      { headers: { batch: true } },
    );
    assert.equal(statements.length, 1);
    assert.equal(ids.length, 10_000);
    const rows = await db.pool.query("SELECT q.msg_id::text, q.message, q.headers FROM pgmq.q_bulk q ORDER BY q.msg_id LIMIT 3");
    assert.deepEqual(
      rows.rows.map((r) => r.message.i),
      [0, 1, 2],
    );
    assert.deepEqual(rows.rows[0].headers, { batch: true });
    assert.deepEqual(
      ids.slice(0, 3),
      rows.rows.map((r) => r.msg_id),
    );
  });

  test("work joins the caller's transaction: a rollback sends nothing, a commit sends", async () => {
    await queues.createQueue("tx");
    const client = await db.pool.connect();
    try {
      await client.query("BEGIN");
      await queues.withClient(client).send("tx", { n: 1 });
      await client.query("ROLLBACK");
      await client.query("BEGIN");
      await queues.withClient(client).send("tx", { n: 2 });
      await client.query("COMMIT");
    } finally {
      client.release();
    }
    const read = await queues.read("tx", 30, 10);
    assert.deepEqual(
      read.map((m) => m.message),
      [{ n: 2 }],
    );
  });
});

describe("hostile input", () => {
  test("bad queue names are rejected with a clear error before any SQL", async () => {
    for (const name of ["x; drop table", "a".repeat(200), "ünïcode", "", "Upper", 'q"uote', null]) {
      await assert.rejects(
        () => queues.send(name as string, {}),
        (error: unknown) =>
          error instanceof ValidationError && error.code === "INVALID_QUEUE_NAME" && /queue names are 1-47 characters/.test(error.message),
        `name ${String(name)}`,
      );
    }
    await assert.rejects(() => queues.createQueue("a".repeat(45)), /1-43 characters/);
  });

  test("payloads with quotes, $$, unicode and 1 MB of JSON round trip exactly", async () => {
    await queues.createQueue("payloads");
    const big = { blob: "x".repeat(1024 * 1024), nested: Array.from({ length: 100 }, (_, i) => ({ i, s: `"${i}"` })) };
    const payloads = [
      { text: `it's "quoted" \\ back\\slash` },
      { text: "$$ DROP TABLE pgmq.meta; $$ $tag$ x $tag$" },
      { text: "héllo wörld — 日本語 🎉 \u2028 \t\n" },
      big,
    ];
    for (const payload of payloads) {
      const id = await queues.send("payloads", payload);
      const popped = await queues.pop("payloads");
      assert.equal(popped?.msgId, id);
      assert.deepEqual(popped?.message, payload);
      assert.equal(JSON.stringify(popped?.message).length, JSON.stringify(payload).length);
    }
  });

  test("payloads JSON cannot carry are rejected with a typed error", async () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const cases: Array<[unknown, RegExp]> = [
      [circular, /circular/i],
      [{ n: 10n }, /BigInt/],
      [undefined, /not JSON-serialisable/],
      [{ s: "nul\u0000" }, /NUL/],
    ];
    for (const [payload, pattern] of cases) {
      await assert.rejects(
        () => queues.send("payloads", payload),
        (e: unknown) => e instanceof ValidationError && e.code === "INVALID_PAYLOAD" && pattern.test(e.message),
      );
    }
    const small = new QueueClient(db.pool, { maxPayloadBytes: 100 });
    await assert.rejects(
      () => small.send("payloads", { s: "y".repeat(200) }),
      (e: unknown) => (e as { code?: string }).code === "PAYLOAD_TOO_LARGE" && /100-byte limit/.test((e as Error).message),
    );
  });

  test("bad options are rejected naming the value", async () => {
    await assert.rejects(() => queues.read("payloads", -1, 1), /vtSeconds must be a finite number >= 0, got -1/);
    await assert.rejects(() => queues.read("payloads", 1, 0), /qty must be an integer >= 1, got 0/);
    await assert.rejects(() => queues.send("payloads", {}, { delayMs: Number.NaN }), /delayMs/);
    await assert.rejects(() => queues.archive("payloads", "1; drop"), /invalid message id/);
  });
});
