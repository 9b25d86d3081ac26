import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { Pgbus } from "../../src/bus.ts";
import { ValidationError } from "../../src/errors.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { runPartitionMaintenance } from "../../src/queue/admin.ts";
import { FIFO_GROUP_HEADER } from "../../src/queue/client.ts";
import { createWorkerStore } from "../../src/worker/worker-store.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

/** Unlogged, partitioned (pg_partman) and FIFO-grouped queues through pgbus's API. */
let db: TestDatabase;
let bus: Pgbus;
let partman = false;

before(async () => {
  db = await createTestDatabase("queue_kinds");
  bus = new Pgbus({ connectionString: db.url });
  await bus.migrate();
  const available = await db.pool.query("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_partman'");
  partman = available.rows.length > 0;
  if (partman) await db.pool.query("CREATE EXTENSION pg_partman");
});
after(async () => {
  await bus.close();
  await db.drop();
});

const sql = async <T = Record<string, unknown>>(text: string, values: unknown[] = []): Promise<T[]> =>
  (await db.pool.query(text, values)).rows as T[];

async function until(predicate: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const invalidOption = (pattern: RegExp) => (error: unknown) =>
  error instanceof ValidationError && error.code === "INVALID_OPTION" && pattern.test(error.message);

describe("createQueue options are checked before any SQL", () => {
  test("bad unlogged / partitioned options", async () => {
    await assert.rejects(
      bus.queues.createQueue("k_bad", { unlogged: "yes" as unknown as boolean }),
      invalidOption(/unlogged must be a boolean/),
    );
    await assert.rejects(
      bus.queues.createQueue("k_bad", { unlogged: true, partitioned: { interval: 100, retention: 1000 } }),
      invalidOption(/either unlogged or partitioned/),
    );
    for (const partitioned of [
      { interval: 0, retention: 10 },
      { interval: -5, retention: 10 },
      { interval: "1 fortnight", retention: "2 days" },
      { interval: "1 day; drop table pgmq.meta", retention: "2 days" },
      { interval: 1.5, retention: 10 },
    ]) {
      await assert.rejects(bus.queues.createQueue("k_bad", { partitioned }), invalidOption(/partitioned\.(interval|retention) must be/));
    }
    await assert.rejects(
      bus.queues.createQueue("k_bad", { partitioned: { interval: 100, retention: "1 day" } }),
      invalidOption(/of one kind/),
    );
    await assert.rejects(bus.queues.send("k_bad", {}, { groupKey: "" }), invalidOption(/groupKey must be a string/));
    assert.equal(await bus.queues.queueExists("k_bad"), false);
  });
});

describe("unlogged queues", () => {
  test("the queue table is unlogged, its archive and DLQ are not; workers run its jobs", async () => {
    await bus.queues.createQueue("k_unlogged", { unlogged: true });
    const persistence = await sql<{ relname: string; relpersistence: string }>(
      "SELECT relname, relpersistence FROM pg_class WHERE relnamespace = 'pgmq'::regnamespace AND relname IN ('q_k_unlogged', 'a_k_unlogged', 'q_k_unlogged_dlq') ORDER BY 1",
    );
    assert.deepEqual(
      persistence.map((row) => [row.relname, row.relpersistence]),
      [
        ["a_k_unlogged", "p"],
        ["q_k_unlogged", "u"],
        ["q_k_unlogged_dlq", "p"],
      ],
    );
    assert.deepEqual(await sql("SELECT is_unlogged FROM pgmq.meta WHERE queue_name = 'k_unlogged'"), [{ is_unlogged: true }]);
    const done: number[] = [];
    const job = defineJob({
      name: "k_unlogged_job",
      queue: "k_unlogged",
      perform(payload: { n: number }) {
        done.push(payload.n);
      },
    });
    await bus.enqueueMany(
      job,
      Array.from({ length: 20 }, (_, n) => ({ n })),
    );
    const worker = bus.worker({ queues: ["k_unlogged"], capacity: 5, pollIntervalMs: 50 });
    await worker.start();
    try {
      await until(async () => done.length === 20);
    } finally {
      await worker.stop();
    }
  });
});

describe("partitioned queues (pg_partman)", () => {
  test("createQueue with partitioned: pg_partman manages queue and archive; a worker drains it across partitions, each message claimed once", async (t) => {
    if (!partman) return t.skip("pg_partman is not installed");
    await bus.queues.createQueue("k_part", { partitioned: { interval: 50, retention: 100 } });
    const kinds = await sql<{ relname: string; relkind: string }>(
      "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'pgmq'::regnamespace AND relname IN ('q_k_part', 'a_k_part', 'q_k_part_dlq') ORDER BY 1",
    );
    assert.deepEqual(
      kinds.map((row) => [row.relname, row.relkind]),
      [
        ["a_k_part", "p"],
        ["q_k_part", "p"],
        ["q_k_part_dlq", "r"],
      ],
    );
    assert.deepEqual(await sql("SELECT is_partitioned FROM pgmq.meta WHERE queue_name = 'k_part'"), [{ is_partitioned: true }]);

    const runs = new Map<number, number>();
    const job = defineJob({
      name: "k_part_job",
      queue: "k_part",
      maxRetries: 1,
      backoff: { baseMs: 10, maxMs: 10, jitter: 0 },
      perform(payload: { n: number }) {
        runs.set(payload.n, (runs.get(payload.n) ?? 0) + 1);
        if (payload.n === 7) throw new Error("always fails");
      },
    });
    const total = 180; // ids 1..180: four partitions of 50 ids
    await bus.enqueueMany(
      job,
      Array.from({ length: total }, (_, n) => ({ n })),
    );
    await runPartitionMaintenance(db.pool); // partitions ahead for the ids just used
    const untuned = await sql(
      `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'pgmq.q_k_part'::regclass AND NOT coalesce(c.reloptions @> ARRAY['fillfactor=70'], false)`,
    );
    assert.deepEqual(untuned, [], "every queue partition has a plain queue's storage settings");
    // The claim's UPDATE meets its rows by ctid; every partition has a row at (0,1), (0,2)...
    const worker = bus.worker({ queues: ["k_part"], capacity: 8, pollIntervalMs: 50, visibilityTimeoutSec: 2 });
    await worker.start();
    try {
      await until(
        async () => (await bus.queues.metrics("k_part_dlq")).queueLength === 1 && (await bus.queues.metrics("k_part")).queueLength === 0,
      );
    } finally {
      await worker.stop();
    }
    const archived = await sql<{ n: number; read_ct: number }>("SELECT count(*)::int AS n, max(read_ct) AS read_ct FROM pgmq.a_k_part");
    assert.deepEqual(archived, [{ n: total - 1, read_ct: 1 }], "every message archived after exactly one claim");
    for (let n = 0; n < total; n++) assert.equal(runs.get(n), n === 7 ? 2 : 1, `job ${n}`);
  });

  test("a worker's claim on a partitioned queue takes exactly the rows it picked, though partitions share ctids", async (t) => {
    if (!partman) return t.skip("pg_partman is not installed");
    await bus.queues.createQueue("k_ctid", { deadLetterQueue: false, partitioned: { interval: 10, retention: 1000 } });
    await bus.queues.sendBatch(
      "k_ctid",
      Array.from({ length: 30 }, (_, n) => ({ n })),
    ); // ids 1..30 in three partitions, each with rows at (0,1), (0,2), ...
    const store = createWorkerStore(db.pool);
    const claimed = await store.claim("k_ctid", 30, 2);
    assert.deepEqual(
      claimed.map((m) => m.msgId),
      ["1", "2"],
    );
    const invisible = await sql<{ msg_id: string }>("SELECT msg_id::text FROM pgmq.q_k_ctid WHERE vt > clock_timestamp() ORDER BY msg_id");
    assert.deepEqual(
      invisible.map((row) => row.msg_id),
      ["1", "2"],
      "no row of another partition was claimed along",
    );
  });

  test("a worker's claim on a partitioned queue skips the partitions its rows cannot be in: those made ahead, and in its UPDATE and ack the ones none of its rows is in", async (t) => {
    if (!partman) return t.skip("pg_partman is not installed");
    await bus.queues.createQueue("k_prune", { deadLetterQueue: false, partitioned: { interval: 100, retention: 1000 } });
    await bus.queues.sendBatch(
      "k_prune",
      Array.from({ length: 150 }, (_, n) => ({ n })),
    ); // ids 1..150: partitions p0 and p100
    await runPartitionMaintenance(db.pool); // partitions made ahead up to p500, and the default one
    await sql("ANALYZE pgmq.q_k_prune");
    const partitions = await sql<{ name: string; start: string | null }>(
      `SELECT c.relname AS name, substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \\(''?(\\d+)') AS start
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'pgmq.q_k_prune'::regclass`,
    );
    const ahead = partitions.filter((p) => p.start !== null && Number(p.start) > 150).map((p) => p.name);
    assert.ok(ahead.length >= 3, `partitions made ahead: ${ahead.join(", ")}`);

    // The store's claims run as they are; before each, the same statement with the same
    // values runs under EXPLAIN ANALYZE (as a generic plan, what a named statement settles
    // on) in a transaction that is rolled back.
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    t.after(() => client.end());
    type PlanNode = { "Node Type": string; "Relation Name"?: string; "Actual Loops": number; Plans?: PlanNode[] };
    const plans: PlanNode[] = [];
    const explaining = {
      async query(config: { name: string; text: string; values: unknown[] }) {
        if (config.name.includes("claim")) {
          await client.query("BEGIN");
          await client.query("SET LOCAL plan_cache_mode = force_generic_plan");
          await client.query(`PREPARE explained AS ${config.text}`);
          const literal = (value: unknown): string =>
            value === null
              ? "NULL"
              : Array.isArray(value)
                ? client.escapeLiteral(`{${value.map((element) => (element === null ? "NULL" : String(element))).join(",")}}`)
                : client.escapeLiteral(String(value));
          const explained = await client.query(
            `EXPLAIN (ANALYZE, COSTS OFF, FORMAT JSON) EXECUTE explained(${config.values.map(literal).join(", ")})`,
          );
          await client.query("ROLLBACK");
          await client.query("DEALLOCATE explained");
          plans.push((explained.rows[0] as { "QUERY PLAN": Array<{ Plan: PlanNode }> })["QUERY PLAN"][0]!.Plan);
        }
        return client.query(config);
      },
    };
    const store = createWorkerStore(explaining as unknown as pg.Client);
    const first = await store.claim("k_prune", 30, 10);
    const second = await store.claim("k_prune", 30, 10, { claims: first.map((m) => ({ id: m.msgId, readCt: m.readCt })), mode: "delete" });
    assert.deepEqual(
      second.map((m) => m.msgId),
      Array.from({ length: 10 }, (_, n) => String(n + 11)),
    );
    assert.deepEqual(await sql("SELECT count(*)::int AS n FROM pgmq.q_k_prune WHERE msg_id <= 10"), [{ n: 0 }], "the first ten acked");

    const scans = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).flatMap(scans)];
    assert.equal(plans.length, 2);
    for (const plan of plans) {
      const ran = scans(plan).filter((node) => node["Relation Name"] !== undefined && node["Actual Loops"] > 0);
      assert.deepEqual(
        ran.filter((node) => ahead.includes(node["Relation Name"]!)).map((node) => `${node["Node Type"]} on ${node["Relation Name"]}`),
        [],
        "no partition made ahead is read",
      );
    }
    // The second claim acked ids 1..10 and claimed 11..20, all in p0: p100's table is read
    // only by the probe (through its claim index), never by the UPDATE or the ack.
    const p100 = scans(plans[1]!).filter((node) => node["Relation Name"] === "q_k_prune_p100" && node["Actual Loops"] > 0);
    assert.deepEqual(
      p100.map((node) => node["Node Type"]),
      ["Index Scan"],
    );
  });

  test("a partitioned queue whose msg_id sequence pgmq did not name is claimed without the sequence bound", async (t) => {
    if (!partman) return t.skip("pg_partman is not installed");
    await bus.queues.createQueue("k_seq", { deadLetterQueue: false, partitioned: { interval: 100, retention: 1000 } });
    await sql('ALTER SEQUENCE pgmq."q_k_seq_msg_id_seq" RENAME TO "k_seq_ids"');
    await bus.queues.sendBatch(
      "k_seq",
      Array.from({ length: 3 }, (_, n) => ({ n })),
    );
    const store = createWorkerStore(db.pool);
    const first = await store.claim("k_seq", 30, 2);
    const second = await store.claim("k_seq", 30, 2, { claims: first.map((m) => ({ id: m.msgId, readCt: m.readCt })), mode: "delete" });
    assert.deepEqual(
      [...first, ...second].map((m) => m.msgId),
      ["1", "2", "3"],
    );
    assert.deepEqual(await sql("SELECT msg_id::int AS id FROM pgmq.q_k_seq"), [{ id: 3 }], "the first two acked by the second claim");
  });

  test("retention drops whole partitions (no DELETE): old archive ids go with their partitions, drained queue partitions are dropped", async (t) => {
    if (!partman) return t.skip("pg_partman is not installed");
    await bus.queues.createQueue("k_ret", { deadLetterQueue: false, partitioned: { interval: 100, retention: 200 } });
    // pg_partman makes partitions 4 intervals ahead: maintenance must run before the ids outgrow them
    const ids: string[] = [];
    for (let batch = 0; batch < 3; batch++) {
      ids.push(
        ...(await bus.queues.sendBatch(
          "k_ret",
          Array.from({ length: 200 }, (_, n) => ({ n })),
        )),
      );
      await runPartitionMaintenance(db.pool);
    }
    const queuePartitions = async () =>
      (await sql<{ n: number }>("SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'pgmq.q_k_ret'::regclass"))[0]!.n;
    const queueBefore = await queuePartitions();
    await runPartitionMaintenance(db.pool);
    assert.equal(await queuePartitions(), queueBefore, "no queue partition with messages in it is dropped");
    const partitions = async () =>
      (await sql<{ n: number }>("SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'pgmq.a_k_ret'::regclass"))[0]!.n;
    // Archive 200 at a time, as acks would, with maintenance between: each pass drops the
    // archive partitions that fell out of the retention (200 ids behind the newest).
    let archivedTotal = 0;
    let mostPartitions = 0;
    for (let from = 0; from < ids.length; from += 200) {
      archivedTotal += (await bus.queues.archive("k_ret", ids.slice(from, from + 200))).length;
      mostPartitions = Math.max(mostPartitions, await partitions());
      await runPartitionMaintenance(db.pool);
      // whatever left went in whole partitions (ids 0-99, 100-199, ...): a dropped partition,
      // not a DELETE, so the oldest id kept starts a partition and no id after it is missing
      const kept = (
        await sql<{ min: string | null; max: string | null; n: number }>(
          "SELECT min(msg_id)::text AS min, max(msg_id)::text AS max, count(*)::int AS n FROM pgmq.a_k_ret",
        )
      )[0]!;
      if (Number(kept.min) > 1) assert.equal(Number(kept.min) % 100, 0, `oldest kept id ${kept.min} starts a partition`);
      assert.equal(kept.n, Number(kept.max) - Number(kept.min) + 1);
    }
    assert.equal(archivedTotal, 600);
    const gone = await sql(
      "SELECT to_regclass('pgmq.a_k_ret_p0') AS p0, to_regclass('pgmq.a_k_ret_p100') AS p100, to_regclass('pgmq.a_k_ret_p400') AS p400",
    );
    assert.deepEqual(
      gone,
      [{ p0: null, p100: null, p400: "pgmq.a_k_ret_p400" }],
      `the oldest archive partitions were dropped (most at once: ${mostPartitions})`,
    );
    const { min, n } = (await sql<{ min: string; n: number }>("SELECT min(msg_id)::text AS min, count(*)::int AS n FROM pgmq.a_k_ret"))[0]!;
    assert.ok(Number(min) > 300, `the oldest archived ids went with their partitions (oldest left: ${min})`);
    assert.equal(n, 600 - Number(min) + 1, "every id from the oldest kept partition on is still there");
    assert.ok((await queuePartitions()) < queueBefore, "the drained queue partitions were dropped too");
    assert.equal((await bus.queues.metrics("k_ret")).queueLength, 0);
  });
});

describe("FIFO groups", () => {
  test("groupKey sets x-pgmq-group; readGrouped serves a group in order and not while its head is in flight", async () => {
    await bus.queues.createQueue("k_fifo", { deadLetterQueue: false });
    const ids: Record<string, string[]> = { a: [], b: [] };
    for (const [group, n] of [
      ["a", 1],
      ["b", 1],
      ["a", 2],
      ["b", 2],
      ["a", 3],
    ] as const) {
      ids[group]!.push(await bus.queues.send("k_fifo", { group, n }, { groupKey: group }));
    }
    const [first] = await bus.queues.read("k_fifo", 0, 1);
    assert.deepEqual(first?.headers, { [FIFO_GROUP_HEADER]: "a" });

    // SQS FIFO: fill from the group with the oldest head first (a1 a2 a3, then b1), returned in id order
    const batch = await bus.queues.readGrouped<{ group: string; n: number }>("k_fifo", 30, 4);
    assert.deepEqual(
      batch.map((m) => `${m.message.group}${m.message.n}`),
      ["a1", "b1", "a2", "a3"],
    );
    // every group's head is in flight: nothing more, though b2 is visible
    assert.deepEqual(await bus.queues.readGrouped("k_fifo", 30, 4), []);
    await bus.queues.delete(
      "k_fifo",
      batch.map((m) => m.msgId),
    );
    assert.deepEqual(
      (await bus.queues.readGrouped<{ group: string; n: number }>("k_fifo", 30, 4)).map((m) => `${m.message.group}${m.message.n}`),
      ["b2"],
    );
    await bus.queues.purgeQueue("k_fifo");

    // round robin: first of each group, then the second of each...
    for (const [group, n] of [
      ["a", 1],
      ["a", 2],
      ["a", 3],
      ["b", 1],
      ["b", 2],
    ] as const) {
      await bus.queues.send("k_fifo", { group, n }, { groupKey: group });
    }
    assert.deepEqual(
      (await bus.queues.readGrouped<{ group: string; n: number }>("k_fifo", 30, 5, { roundRobin: true })).map(
        (m) => `${m.message.group}${m.message.n}`,
      ),
      ["a1", "b1", "a2", "b2", "a3"],
    );
  });

  test("enqueue with groupKey writes the group header next to the caller's headers", async () => {
    const job = defineJob({ name: "k_fifo_job", queue: "k_fifo_jobs", perform() {} });
    await bus.enqueueMany(job, [{ a: 1 }, { a: 2 }], { groupKey: "customer-42", headers: { trace: "t" } });
    const rows = await sql<{ headers: unknown }>("SELECT headers FROM pgmq.q_k_fifo_jobs ORDER BY msg_id");
    assert.deepEqual(
      rows.map((row) => row.headers),
      [
        { trace: "t", [FIFO_GROUP_HEADER]: "customer-42" },
        { trace: "t", [FIFO_GROUP_HEADER]: "customer-42" },
      ],
    );
  });
});
