import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { ValidationError } from "../../src/errors.ts";
import { defineJob } from "../../src/jobs/define.ts";
import * as sql from "../../src/queue/sql.ts";
import { createWorkerStore } from "../../src/worker/worker-store.ts";
import { cliEnv, runCli, waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

/** Delayed jobs, retries and priorities (issue #14): what runs when, and what a claim reaches. */
let db: TestDatabase;
let bus: Pgbus;
let partman = false;

before(async () => {
  db = await createTestDatabase("scheduling");
  bus = new Pgbus({ connectionString: db.url });
  await bus.migrate();
  partman = (await db.pool.query("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_partman'")).rows.length > 0;
  if (partman) await db.pool.query("CREATE EXTENSION pg_partman");
});
after(async () => {
  await bus.close();
  await db.drop();
});

const dbNow = async (): Promise<number> => ((await db.pool.query("SELECT clock_timestamp() AS now")).rows[0].now as Date).getTime();

/** Every index scan of the claim's plan: rows it returned plus rows it fetched and threw away. */
async function rowsTheClaimTouches(queue: string, qty: number): Promise<{ claimed: number; touched: number }> {
  const client = await db.pool.connect();
  try {
    await client.query("BEGIN");
    const result = await client.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql.claimAndAck(queue, "delete").text}`, [
      30,
      qty,
      [],
      [],
      null,
      null,
    ]);
    await client.query("ROLLBACK");
    const plan = result.rows[0]["QUERY PLAN"][0].Plan;
    let touched = 0;
    const visit = (node: Record<string, unknown>) => {
      if (node["Relation Name"] === `q_${queue}` && String(node["Node Type"]).includes("Index")) {
        touched += Number(node["Actual Rows"]) * Number(node["Actual Loops"]) + Number(node["Rows Removed by Filter"] ?? 0);
      }
      for (const child of (node["Plans"] as Array<Record<string, unknown>> | undefined) ?? []) visit(child);
    };
    visit(plan);
    return { claimed: Number(plan["Actual Rows"]), touched };
  } finally {
    client.release();
  }
}

describe("delayed jobs", () => {
  test("a delayed job is not claimed before its time and is claimed soon after", async () => {
    const startedAt: number[] = [];
    const job = defineJob({
      name: "sch_delayed",
      queue: "sch_delayed",
      perform() {
        startedAt.push(Date.now());
      },
    });
    const worker = bus.worker({ queues: ["sch_delayed"], capacity: 2, pollIntervalMs: 50 });
    await worker.start();
    try {
      const runAt = new Date((await dbNow()) + 1_500);
      await bus.enqueue(job, {}, { runAt });
      const delayedBy = await bus.enqueue(job, {}, { delayMs: 1_500 });
      assert.ok(delayedBy);
      await waitFor(() => startedAt.length === 2, "both delayed jobs ran", 15_000, 10);
      for (const at of startedAt) assert.ok(at >= runAt.getTime() - 50, `started ${runAt.getTime() - at} ms before its runAt`);
    } finally {
      await worker.stop();
    }
  });

  test("the claim reaches only due rows: delayed messages and retries in backoff are never fetched", async () => {
    await bus.queues.createQueue("sch_reach");
    await bus.queues.sendBatch(
      "sch_reach",
      Array.from({ length: 2_000 }, (_, n) => ({ n })),
      { delayMs: 3_600_000 },
    );
    const ready = await bus.queues.sendBatch("sch_reach", [{ r: 1 }, { r: 2 }, { r: 3 }]);
    const store = createWorkerStore(db.pool);
    // A retry waiting out its backoff, behind the ready ones in msg_id order.
    const [retried] = await bus.queues.sendBatch("sch_reach", [{ r: "retry" }]);
    const [claim] = (await store.claim("sch_reach", 30, 10)).filter((message) => message.msgId === retried);
    assert.ok(claim);
    assert.equal(await store.retry("sch_reach", { id: claim.msgId, readCt: claim.readCt }, 3_600_000, { name: "E", message: "m" }), true);
    await db.pool.query("UPDATE pgmq.q_sch_reach SET vt = clock_timestamp() WHERE msg_id = ANY($1::bigint[])", [ready]);
    await db.pool.query("ANALYZE pgmq.q_sch_reach");
    const { claimed, touched } = await rowsTheClaimTouches("sch_reach", 10);
    assert.equal(claimed, 3);
    assert.ok(touched <= 3, `the claim fetched ${touched} rows for 3 due ones among 2,001 not due`);
  });

  test("a claim planned for its values on a queue never analyzed walks the claim index instead of sorting every due row", async () => {
    // The plan a prepared statement's first runs get, and every run through PgBouncer
    // (unnamed statements): made for the given limit, with no statistics of the table yet.
    await bus.queues.createQueue("sch_fresh");
    await bus.queues.sendBatch(
      "sch_fresh",
      Array.from({ length: 5_000 }, (_, n) => ({ n })),
    );
    const client = await db.pool.connect();
    try {
      await client.query("SET plan_cache_mode = force_custom_plan");
      const result = await client.query(`EXPLAIN (FORMAT JSON) ${sql.claimAndAck("sch_fresh", "delete").text}`, [
        30,
        150,
        [],
        [],
        null,
        null,
      ]);
      const nodes: string[] = [];
      const visit = (node: Record<string, unknown>) => {
        nodes.push(`${String(node["Node Type"])}${node["Index Name"] ? ` ${String(node["Index Name"])}` : ""}`);
        for (const child of (node["Plans"] as Array<Record<string, unknown>> | undefined) ?? []) visit(child);
      };
      visit(result.rows[0]["QUERY PLAN"][0].Plan);
      assert.ok(nodes.includes("Index Scan q_sch_fresh_claim"), `the claim's plan: ${nodes.join(", ")}`);
      assert.ok(!nodes.includes("Sort"), `the claim's plan sorts: ${nodes.join(", ")}`);
    } finally {
      await client.query("RESET plan_cache_mode");
      client.release();
    }
  });

  test("retries still back off", async () => {
    const attempts: number[] = [];
    const job = defineJob({
      name: "sch_retry",
      queue: "sch_retry",
      maxRetries: 1,
      backoff: { baseMs: 1_000, maxMs: 1_000, jitter: 0 },
      perform() {
        attempts.push(Date.now());
        if (attempts.length === 1) throw new Error("first run fails");
      },
    });
    const worker = bus.worker({ queues: ["sch_retry"], capacity: 1, pollIntervalMs: 50 });
    await worker.start();
    try {
      await bus.enqueue(job, {});
      await waitFor(() => attempts.length === 2, "the retry ran", 15_000, 10);
      assert.ok(attempts[1]! - attempts[0]! >= 950, `retried after ${attempts[1]! - attempts[0]!} ms, before its 1,000 ms backoff`);
    } finally {
      await worker.stop();
    }
  });
});

describe("priorities", () => {
  test("with a busy worker, every priority-0 job starts before any priority-9 job enqueued at the same time", async () => {
    const started: string[] = [];
    let release!: () => void;
    const blocker = new Promise<void>((resolve) => (release = resolve));
    const block = defineJob({
      name: "sch_block",
      queue: "sch_prio",
      async perform() {
        started.push("block");
        await blocker;
      },
    });
    const low = defineJob<{ n: number }>({
      name: "sch_low",
      queue: "sch_prio",
      priority: 9,
      perform: ({ n }) => void started.push(`9:${n}`),
    });
    const high = defineJob<{ n: number }>({ name: "sch_high", queue: "sch_prio", perform: ({ n }) => void started.push(`0:${n}`) });
    const worker = bus.worker({ queues: ["sch_prio"], capacity: 1, prefetch: 0, pollIntervalMs: 50 });
    await worker.start();
    try {
      await bus.enqueue(block, {});
      await waitFor(() => started.includes("block"), "the blocking job runs", 10_000, 10);
      const payloads = Array.from({ length: 20 }, (_, n) => ({ n }));
      await bus.enqueueMany(low, payloads); // the job's own priority, 9
      await bus.enqueueMany(high, payloads, { priority: 0 });
      release();
      await waitFor(() => started.length === 41, "all 40 jobs ran", 15_000, 10);
      const firstLow = started.findIndex((run) => run.startsWith("9:"));
      const lastHigh = started.findLastIndex((run) => run.startsWith("0:"));
      assert.ok(lastHigh < firstLow, `order: ${started.join(" ")}`);
      assert.deepEqual(
        started.filter((run) => run.startsWith("0:")),
        payloads.map(({ n }) => `0:${n}`),
        "FIFO within a priority",
      );
    } finally {
      release();
      await worker.stop();
    }
  });

  test("bad priorities are refused with the value named: defineJob, enqueue, enqueueMany, headers", async () => {
    const job = defineJob({ name: "sch_bad", queue: "sch_bad", perform() {} });
    for (const priority of [-1, 10, 1.5, "high", Number.NaN, null]) {
      const named = new RegExp(`priority must be an integer from 0 to 9 \\(0 runs first\\), got .*${String(priority).replace(".", "\\.")}`);
      const refused = (error: unknown) => error instanceof ValidationError && error.code === "INVALID_OPTION" && named.test(error.message);
      assert.throws(() => defineJob({ name: "sch_bad_def", priority: priority as number, perform() {} }), refused);
      await assert.rejects(bus.enqueue(job, {}, { priority: priority as number }), refused);
      await assert.rejects(bus.enqueueMany(job, [{}], { priority: priority as number }), refused);
    }
    await assert.rejects(
      bus.enqueue(job, {}, { headers: { pgbus_priority: 0 } }),
      (error: unknown) =>
        error instanceof ValidationError && /pgbus_priority is pgbus's own; give the priority as the priority option/.test(error.message),
    );
    assert.equal(await bus.queues.queueExists("sch_bad"), false, "nothing was enqueued");
  });

  test("the queue client's read hands out a batch in claim order", async () => {
    await bus.queues.createQueue("sch_read");
    const [normal] = await bus.queues.sendBatch("sch_read", [{ n: "normal" }]);
    const [odd] = await bus.queues.sendBatch("sch_read", [{ n: "odd" }], { headers: { pgbus_priority: "urgent" } });
    const [high] = await bus.queues.sendBatch("sch_read", [{ n: "high" }], { headers: { pgbus_priority: "1" } });
    assert.deepEqual(
      (await bus.queues.read("sch_read", 30, 10)).map((message) => message.msgId),
      [high, normal, odd],
    );
  });

  test("pgbus enqueue --priority: written as the header; a bad value is refused and named", async () => {
    const env = cliEnv(db.url);
    const good = await runCli(["enqueue", "sch_cli", "{}", "--queue", "sch_cli", "--priority", "0"], env);
    assert.equal(good.code, 0, good.stderr);
    const { rows } = await db.pool.query("SELECT headers FROM pgmq.q_sch_cli WHERE msg_id = $1", [good.stdout.trim()]);
    assert.deepEqual(rows[0].headers, { pgbus_priority: 0 });
    const refused = await runCli(["enqueue", "sch_cli", "{}", "--queue", "sch_cli", "--priority", "1.5"], env);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /--priority must be an integer from 0 to 9 \(0 runs first\), got number 1\.5/);
  });

  test("the outbox keeps a job's priority", async () => {
    const job = defineJob({ name: "sch_outbox", queue: "sch_outbox", priority: 2, perform() {} });
    const [id] = await bus.outbox.enqueueMany(job, [{}]);
    const { rows } = await db.pool.query("SELECT headers FROM pgbus.outbox WHERE id = $1", [id]);
    assert.deepEqual(rows[0].headers, { pgbus_priority: 2 });
  });

  test("plain PGMQ clients take part: a pgbus_priority header orders their messages, pgmq.read and pgmq.send still work", async () => {
    await bus.queues.createQueue("sch_pgmq");
    const [plain] = (await db.pool.query("SELECT pgmq.send('sch_pgmq', '{\"who\":\"plain\"}'::jsonb) AS id")).rows.map((row) =>
      String(row.id),
    );
    const [urgent] = (
      await db.pool.query("SELECT pgmq.send('sch_pgmq', '{\"who\":\"urgent\"}'::jsonb, '{\"pgbus_priority\":1}'::jsonb) AS id")
    ).rows.map((row) => String(row.id));
    await db.pool.query('SELECT pgmq.send(\'sch_pgmq\', \'{"who":"odd"}\'::jsonb, \'{"pgbus_priority":"high"}\'::jsonb)');
    await db.pool.query("SELECT pgmq.send('sch_pgmq', '{\"who\":\"later\"}'::jsonb, 3600)");
    const claimed = await createWorkerStore(db.pool).claim("sch_pgmq", 30, 10);
    assert.deepEqual(
      claimed.map((message) => (message.message as { who: string }).who),
      ["urgent", "plain", "odd"],
      "priority 1 first; a missing or unknown priority counts as 5; the delayed one waits",
    );
    assert.deepEqual([claimed[0]!.msgId, claimed[1]!.msgId], [urgent, plain]);
    await db.pool.query("SELECT pgmq.set_vt('sch_pgmq', $1::bigint, 0)", [plain]);
    const read = await db.pool.query("SELECT msg_id::text AS id FROM pgmq.read('sch_pgmq', 30, 10)");
    assert.deepEqual(
      read.rows.map((row) => row.id),
      [plain],
    );
  });
});

describe("queue kinds", () => {
  async function delayedAndPriorities(queue: string): Promise<void> {
    const prio = (priority: number) => ({ pgbus_priority: priority });
    const [later] = await bus.queues.sendBatch(queue, [{ n: "later" }], { delayMs: 3_600_000 });
    const [normal] = await bus.queues.sendBatch(queue, [{ n: "normal" }]);
    const [low] = await bus.queues.sendBatch(queue, [{ n: "low" }], { headers: prio(8) });
    const [high] = await bus.queues.sendBatch(queue, [{ n: "high" }], { headers: prio(0) });
    const store = createWorkerStore(db.pool);
    assert.deepEqual(
      (await store.claim(queue, 30, 10)).map((message) => message.msgId),
      [high, normal, low],
    );
    await db.pool.query(`UPDATE pgmq.q_${queue} SET vt = clock_timestamp() WHERE msg_id = $1`, [later]);
    assert.deepEqual(
      (await store.claim(queue, 30, 10)).map((message) => message.msgId),
      [later],
    );
    const indexes = await db.pool.query("SELECT 1 FROM pg_indexes WHERE schemaname = 'pgmq' AND indexname = $1", [`q_${queue}_claim`]);
    assert.equal(indexes.rows.length, 1, "the claim index exists");
  }

  test("unlogged queue", async () => {
    await bus.queues.createQueue("sch_unlogged", { unlogged: true });
    await delayedAndPriorities("sch_unlogged");
  });

  test("partitioned queue (pg_partman): the index is on the parent, so new partitions have it", async (t) => {
    if (!partman) return t.skip("pg_partman is not installed");
    await bus.queues.createQueue("sch_part", { partitioned: { interval: 2, retention: 100 } });
    await delayedAndPriorities("sch_part");
  });
});
