import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { QueueClient } from "../../src/queue/client.ts";
import { loadMigrations, migrate } from "../../src/schema/migrator.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

const run = promisify(execFile);
const MIGRATE_ONCE = fileURLToPath(new URL("../fixtures/migrate-once.ts", import.meta.url));

describe("migrations", () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase("migrations");
  });
  after(() => db.drop());

  test("twenty processes migrating at once end with one correct schema, each migration applied once", async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, () => run(process.execPath, ["--import", "tsx", MIGRATE_ONCE, db.url]).then((r) => JSON.parse(r.stdout))),
    );
    const all = await loadMigrations();
    const appliedEverywhere = results.flatMap((r: { applied: string[] }) => r.applied);
    assert.equal(appliedEverywhere.length, all.length, "every migration applied by exactly one process");
    assert.equal(new Set(appliedEverywhere).size, all.length);
    const recorded = await db.pool.query("SELECT count(*)::int AS n FROM pgbus.schema_migrations");
    assert.equal(recorded.rows[0].n, all.length);
    const again = await migrate(db.pool);
    assert.deepEqual(again.applied, []);
    assert.equal(again.pgmqExtension, false);
  });
});

describe("PGMQ interoperability", () => {
  let db: TestDatabase;
  let queues: QueueClient;
  before(async () => {
    db = await createTestDatabase("interop");
    await migrate(db.pool);
    queues = new QueueClient(db.pool);
  });
  after(() => db.drop());
  const sql = async (text: string, values: unknown[] = []) => (await db.pool.query(text, values)).rows;

  test("plain SQL create/send/read/archive behave as PGMQ documents", async () => {
    await sql("select pgmq.create('q')");
    const [{ send: id }] = await sql(`select pgmq.send('q', '{"a":1}')`);
    const read = await sql("select * from pgmq.read('q', 30, 1)");
    assert.equal(read.length, 1);
    assert.equal(read[0].msg_id, id);
    assert.equal(read[0].read_ct, 1);
    assert.deepEqual(read[0].message, { a: 1 });
    assert.deepEqual(Object.keys(read[0]), ["msg_id", "read_ct", "enqueued_at", "last_read_at", "vt", "message", "headers"]);
    assert.deepEqual(await sql("select * from pgmq.read('q', 30, 1)"), []);
    const [{ archive }] = await sql("select pgmq.archive('q', $1::bigint)", [id]);
    assert.equal(archive, true);
    const archived = await sql("select msg_id, archived_at from pgmq.a_q");
    assert.equal(archived[0].msg_id, id);
    assert.ok(archived[0].archived_at instanceof Date);
  });

  test("the other PGMQ functions: send_batch, delay, headers, pop, set_vt, delete, purge, metrics, list, drop", async () => {
    await sql("select pgmq.create('f')");
    const ids = (await sql(`select * from pgmq.send_batch('f', array['{"n":1}','{"n":2}','{"n":3}']::jsonb[])`)).map((r) => r.send_batch);
    assert.equal(ids.length, 3);
    await sql(`select pgmq.send('f', '{"later":true}', 3600)`);
    await sql(`select pgmq.send('f', '{"h":true}', '{"x-trace":"abc"}'::jsonb)`);
    const popped = await sql("select * from pgmq.pop('f')");
    assert.deepEqual(popped[0].message, { n: 1 });
    const [moved] = await sql("select * from pgmq.set_vt('f', $1::bigint, 100)", [ids[1]]);
    assert.ok(moved.vt.getTime() > Date.now() + 90_000);
    assert.deepEqual((await sql("select pgmq.delete('f', $1::bigint) as d", [ids[2]]))[0].d, true);
    assert.deepEqual((await sql("select pgmq.delete('f', array[$1::bigint]) as d", [ids[2]])).length, 0);
    const [metrics] = await sql("select * from pgmq.metrics('f')");
    assert.equal(Number(metrics.queue_length), 3);
    assert.equal(Number(metrics.total_messages), 5);
    assert.equal(Number(metrics.queue_visible_length), 1);
    const visible = await sql("select * from pgmq.read('f', 10, 5)");
    assert.deepEqual(visible[0].headers, { "x-trace": "abc" });
    assert.ok((await sql("select * from pgmq.list_queues()")).some((q) => q.queue_name === "f"));
    assert.equal(Number((await sql("select pgmq.purge_queue('f') as n"))[0].n), 3);
    assert.equal((await sql("select pgmq.drop_queue('f') as d"))[0].d, true);
  });

  test("messages sent with plain SQL are read by the client, and the other way round", async () => {
    await queues.createQueue("both");
    await sql(`select pgmq.send('both', '{"from":"sql"}')`);
    const [fromSql] = await queues.read("both", 30, 1);
    assert.deepEqual(fromSql?.message, { from: "sql" });
    await queues.archive("both", fromSql!.msgId);
    const id = await queues.send("both", { from: "client" });
    const [fromClient] = await sql("select * from pgmq.read('both', 30, 1)");
    assert.equal(fromClient.msg_id, id);
    assert.deepEqual(fromClient.message, { from: "client" });
  });

  test("the SQL functions reject hostile queue names (PGMQ's rule)", async () => {
    await assert.rejects(() => sql(`select pgmq.create('x; drop table pgmq.meta')`), /queue name contains invalid characters/);
    await assert.rejects(() => sql(`select pgmq.send('Q"', '{}')`), /relation "pgmq\.q_q"" does not exist/);
  });

  test("topic routing as PGMQ's: * matches one segment, # is replaced by any characters", async () => {
    const patterns: Record<string, string> = { exact: "a.b", star: "a.*", hash: "a.#", all: "#", middle: "a.*.c", lead: "#.c" };
    for (const [queue, pattern] of Object.entries(patterns)) {
      await sql("select pgmq.create($1)", [`t_${queue}`]);
      await sql("select pgmq.bind_topic($1, $2)", [pattern, `t_${queue}`]);
    }
    const routed = async (key: string) => {
      await sql("select pgmq.purge_queue(queue_name) from pgmq.meta where queue_name like 't\\_%'");
      const [{ n }] = await sql("select pgmq.send_topic($1, '{}'::jsonb) as n", [key]);
      const hit: string[] = [];
      for (const queue of Object.keys(patterns)) if ((await sql(`select 1 from pgmq.q_t_${queue}`)).length) hit.push(queue);
      assert.equal(n, hit.length);
      return hit.sort();
    };
    assert.deepEqual(await routed("a.b"), ["all", "exact", "hash", "star"]);
    // PGMQ compiles `a.#` to ^a\..*$ and `#.c` to ^.*\.c$: neither matches the bare segment.
    assert.deepEqual(await routed("a"), ["all"]);
    assert.deepEqual(await routed("a.b.c"), ["all", "hash", "lead", "middle"]);
    assert.deepEqual(await routed("c"), ["all"]);
    assert.deepEqual(await routed("x.y"), ["all"]);
    await assert.rejects(() => sql("select pgmq.bind_topic('a..b', 't_all')"), /pattern cannot contain consecutive dots/);
    await assert.rejects(() => sql("select pgmq.send_topic('a.*', '{}'::jsonb)"), /routing_key contains invalid characters/);
  });
});

describe("upgrading a database made before pgmq/0003", () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase("upgrade_0003");
  });
  after(() => db.drop());

  test("queues and messages survive; bindings are recompiled the PGMQ way; a dangling binding is removed, not left to break publishes", async (t) => {
    const extension = (await db.pool.query("SELECT 1 FROM pg_extension WHERE extname = 'pgmq'")).rows.length > 0;
    if (extension) return t.skip("the pgmq extension is installed: pgmq migrations do not apply");
    // The schema as it was: every migration but pgmq/0003, applied and recorded.
    const all = await loadMigrations();
    await db.pool.query("CREATE SCHEMA pgbus");
    await db.pool.query(`CREATE TABLE pgbus.schema_migrations (
      set_name text NOT NULL, version integer NOT NULL, name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (set_name, version))`);
    for (const m of all.filter((m) => !(m.set === "pgmq" && m.version >= 3))) {
      await db.pool.query(m.sql);
      await db.pool.query("INSERT INTO pgbus.schema_migrations (set_name, version, name) VALUES ($1, $2, $3)", [m.set, m.version, m.name]);
    }
    const queues = new QueueClient(db.pool);
    await queues.createQueue("old_q");
    const id = await queues.send("old_q", { kept: true });
    await db.pool.query("SELECT pgmq.bind_topic('a.#', 'old_q')");
    await db.pool.query("SELECT pgmq.bind_topic('x.y', 'typo_q')"); // accepted before 0003
    await assert.rejects(db.pool.query("SELECT pgmq.send_topic('x.y', '{}'::jsonb)"), /relation "pgmq\.q_typo_q" does not exist/);

    const result = await migrate(db.pool);
    assert.deepEqual(result.applied, ["pgmq/0003_pgmq_parity.sql"]);
    const bindings = await db.pool.query("SELECT pattern, queue_name, compiled_regex FROM pgmq.topic_bindings ORDER BY 1");
    assert.deepEqual(bindings.rows, [{ pattern: "a.#", queue_name: "old_q", compiled_regex: "^a\\..*$" }]);
    const sent = await db.pool.query(
      "SELECT pgmq.send_topic('x.y', '{}'::jsonb) AS n, pgmq.send_topic('a', '{}'::jsonb) AS bare, pgmq.send_topic('a.b', '{}'::jsonb) AS deep",
    );
    assert.deepEqual(sent.rows, [{ n: 0, bare: 0, deep: 1 }]);
    const read = await queues.read("old_q", 30, 10);
    assert.deepEqual(
      read.map((m) => m.msgId),
      [id, String(Number(id) + 1)],
    );
  });
});
