import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdir } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type pg from "pg";
import { QueueClient } from "../../src/queue/client.ts";
import { loadMigrations, migrate } from "../../src/schema/migrator.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

const run = promisify(execFile);
const MIGRATE_ONCE = fileURLToPath(new URL("../fixtures/migrate-once.ts", import.meta.url));

/** The migration files on disk, `<set>/<file>` in the order they must apply: read here, not through the loader under test. */
async function migrationFiles(): Promise<string[]> {
  const files: string[] = [];
  for (const set of ["pgmq", "pgbus"]) {
    const dir = fileURLToPath(new URL(`../../src/schema/migrations/${set}/`, import.meta.url));
    for (const file of (await readdir(dir)).filter((name) => name.endsWith(".sql")).sort()) files.push(`${set}/${file}`);
  }
  return files;
}

/** What a migrated database holds in its pgmq and pgbus schemas: relations, columns, functions, triggers. */
async function schemaOf(pool: pg.Pool): Promise<Record<string, string[]>> {
  const list = async (text: string) => (await pool.query<{ item: string }>(text)).rows.map((row) => row.item);
  return {
    relations: await list(`SELECT n.nspname || '.' || c.relname || ' ' || c.relkind::text AS item FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('pgmq', 'pgbus') ORDER BY 1`),
    columns: await list(`SELECT table_schema || '.' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable AS item
      FROM information_schema.columns WHERE table_schema IN ('pgmq', 'pgbus') ORDER BY 1`),
    functions: await list(`SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS item
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname IN ('pgmq', 'pgbus') ORDER BY 1`),
    triggers: await list(`SELECT n.nspname || '.' || c.relname || ' ' || t.tgname AS item FROM pg_trigger t
      JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE NOT t.tgisinternal AND n.nspname IN ('pgmq', 'pgbus') ORDER BY 1`),
  };
}

describe("migrations", () => {
  let db: TestDatabase;
  let reference: TestDatabase;
  before(async () => {
    db = await createTestDatabase("migrations");
    reference = await createTestDatabase("migrations_ref");
  });
  after(async () => {
    await db.drop();
    await reference.drop();
  });

  test("a fresh database gets every migration file, in order, and the schema the docs promise", async () => {
    const result = await migrate(reference.pool);
    assert.deepEqual(result.applied, await migrationFiles());
    assert.equal(result.pgmqExtension, false);
    const recorded = await reference.pool.query(
      "SELECT set_name || '/' || name AS file FROM pgbus.schema_migrations ORDER BY applied_at, set_name DESC, version",
    );
    assert.deepEqual(
      recorded.rows.map((row) => row.file),
      await migrationFiles(),
    );
    const schema = await schemaOf(reference.pool);
    // The PGMQ API (DESIGN: "the functions send, send_batch, read, pop, set_vt, archive, delete
    // (single and arrays), create, drop_queue, purge_queue, metrics, bind_topic, send_topic").
    const functions = new Set(schema.functions!.map((f) => f.slice(0, f.indexOf("("))));
    for (const name of [
      "send",
      "send_batch",
      "read",
      "pop",
      "set_vt",
      "archive",
      "delete",
      "create",
      "drop_queue",
      "purge_queue",
      "metrics",
      "list_queues",
      "bind_topic",
      "send_topic",
    ]) {
      assert.ok(functions.has(`pgmq.${name}`), `pgmq.${name} exists`);
    }
    for (const name of ["archive", "delete"]) {
      const overloads = schema.functions!.filter((f) => f.startsWith(`pgmq.${name}(`));
      assert.ok(
        overloads.some((f) => f.includes("bigint[]")) && overloads.some((f) => !f.includes("[]")),
        `pgmq.${name}: single and array forms: ${overloads.join(", ")}`,
      );
    }
    for (const table of [
      "pgmq.meta",
      "pgmq.topic_bindings",
      "pgbus.processes",
      "pgbus.failed_jobs",
      "pgbus.processed_events",
      "pgbus.outbox",
      "pgbus.schema_migrations",
    ]) {
      assert.ok(schema.relations!.includes(`${table} r`), `table ${table} exists`);
    }
    // A queue made by pgmq.create has PGMQ's columns, and the NOTIFY trigger pgbus adds.
    await reference.pool.query("SELECT pgmq.create('shape')");
    const columns = await reference.pool.query(
      "SELECT column_name AS name FROM information_schema.columns WHERE table_schema = 'pgmq' AND table_name = 'q_shape' ORDER BY ordinal_position",
    );
    assert.deepEqual(
      columns.rows.map((row) => row.name),
      ["msg_id", "read_ct", "enqueued_at", "last_read_at", "vt", "message", "headers"],
    );
    const archive = await reference.pool.query(
      "SELECT column_name AS name FROM information_schema.columns WHERE table_schema = 'pgmq' AND table_name = 'a_shape' ORDER BY ordinal_position",
    );
    assert.deepEqual(
      archive.rows.map((row) => row.name).sort(),
      ["msg_id", "read_ct", "enqueued_at", "last_read_at", "vt", "message", "headers", "archived_at"].sort(),
      "the queue's columns plus archived_at",
    );
    await reference.pool.query("SELECT pgmq.drop_queue('shape')");
  });

  test("twenty processes migrating at once end with one correct schema, each migration applied once", async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, () => run(process.execPath, ["--import", "tsx", MIGRATE_ONCE, db.url]).then((r) => JSON.parse(r.stdout))),
    );
    const files = await migrationFiles();
    const appliedEverywhere = results.flatMap((r: { applied: string[] }) => r.applied);
    assert.deepEqual([...appliedEverywhere].sort(), [...files].sort(), "every migration applied by exactly one process");
    const recorded = await db.pool.query("SELECT count(*)::int AS n FROM pgbus.schema_migrations");
    assert.equal(recorded.rows[0].n, files.length);
    const again = await migrate(db.pool);
    assert.deepEqual(again.applied, []);
    assert.equal(again.pgmqExtension, false);
    // The same schema as one process migrating alone.
    const single = await createTestDatabase("migrations_single");
    try {
      await migrate(single.pool);
      assert.deepEqual(await schemaOf(db.pool), await schemaOf(single.pool));
    } finally {
      await single.drop();
    }
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
