import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { Pgbus } from "../../src/bus.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

/**
 * The PGMQ functions of pgbus's plain-SQL pgmq schema (migration pgmq/0003) on bad input:
 * NULLs, empty arrays, mismatched lengths, unknown queues. Each gets PGMQ's error (or PGMQ's
 * answer, where PGMQ answers instead of raising). PGMQ's own suites (pgmq-conformance.test.ts)
 * cover the good paths.
 */
let db: TestDatabase;
let bus: Pgbus;

before(async () => {
  db = await createTestDatabase("pgmq_api");
  bus = new Pgbus({ connectionString: db.url });
  await bus.migrate();
  await bus.queues.createQueue("api_q");
  await bus.queues.createQueue("api_r");
});
after(async () => {
  await bus.close();
  await db.drop();
});

const sql = async <T = Record<string, unknown>>(text: string, values: unknown[] = []): Promise<T[]> =>
  (await db.pool.query(text, values)).rows as T[];

/** Rejects with a message matching `pattern`. */
async function fails(text: string, values: unknown[], pattern: RegExp): Promise<void> {
  await assert.rejects(db.pool.query(text, values), (error: unknown) => {
    assert.match(String((error as Error).message), pattern, `${text} ${JSON.stringify(values)}`);
    return true;
  });
}

/** Runs one statement on its own connection and returns the notices and warnings it raised. */
async function notices(text: string, values: unknown[] = []): Promise<{ rows: Record<string, unknown>[]; notices: string[] }> {
  const client = new pg.Client({ connectionString: db.url });
  const seen: string[] = [];
  client.on("notice", (notice) => seen.push(`${notice.severity}: ${notice.message}`));
  await client.connect();
  try {
    const result = await client.query(text, values);
    return { rows: result.rows, notices: seen };
  } finally {
    await client.end();
  }
}

describe("bind_topic refuses a queue that does not exist, at bind time", () => {
  test("a typo is refused with PGMQ's error, and publishing the key keeps working", async () => {
    await sql("SELECT pgmq.bind_topic('orders.created', 'api_q')");
    await fails(
      "SELECT pgmq.bind_topic('orders.created', 'api_qq')",
      [],
      /^Queue "api_qq" does not exist\. Create the queue first using pgmq\.create\(\)$/,
    );
    assert.deepEqual(
      await sql("SELECT pattern, queue_name FROM pgmq.topic_bindings ORDER BY 1, 2"),
      [{ pattern: "orders.created", queue_name: "api_q" }],
      "no binding was stored for the typo",
    );
    assert.equal((await bus.publish("orders.created", { n: 1 })).queues, 1);
    await sql("SELECT pgmq.purge_queue('api_q')");
    await sql("SELECT pgmq.unbind_topic('orders.created', 'api_q')");
  });

  test("NULL and empty queue names and patterns", async () => {
    await fails("SELECT pgmq.bind_topic('a.b', NULL)", [], /^queue_name cannot be NULL or empty$/);
    await fails("SELECT pgmq.bind_topic('a.b', '')", [], /^queue_name cannot be NULL or empty$/);
    await fails("SELECT pgmq.bind_topic(NULL, 'api_q')", [], /^pattern cannot be NULL or empty$/);
    await fails("SELECT pgmq.bind_topic('a..b', 'api_q')", [], /^pattern cannot contain consecutive dots\. Got: a\.\.b$/);
    await fails("SELECT pgmq.unbind_topic(NULL, 'api_q')", [], /^pattern cannot be NULL or empty$/);
    await fails("SELECT pgmq.unbind_topic('a.b', '')", [], /^queue_name cannot be NULL or empty$/);
    assert.deepEqual(await sql("SELECT pgmq.unbind_topic('a.b', 'nope') AS removed"), [{ removed: false }]);
  });

  test("dropping a queue drops its bindings, so later publishes do not fail", async () => {
    await bus.queues.createQueue("api_gone", { deadLetterQueue: false });
    await sql("SELECT pgmq.bind_topic('gone.#', 'api_gone')");
    await sql("SELECT pgmq.bind_topic('gone.#', 'api_r')");
    await bus.queues.dropQueue("api_gone", { deadLetterQueue: false });
    assert.deepEqual(await sql("SELECT queue_name FROM pgmq.list_topic_bindings()"), [{ queue_name: "api_r" }]);
    assert.equal((await bus.publish("gone.x", { n: 1 })).queues, 1);
    await sql("SELECT pgmq.unbind_topic('gone.#', 'api_r')");
    await sql("SELECT pgmq.purge_queue('api_r')");
  });
});

describe("topic functions on bad input", () => {
  test("send_topic: NULL message, negative delay, keys that are NULL, empty or over 255 characters", async () => {
    await fails("SELECT pgmq.send_topic('a.b', NULL::jsonb)", [], /^msg cannot be NULL$/);
    await fails("SELECT pgmq.send_topic('a.b', '{}'::jsonb, -1)", [], /^delay cannot be negative, got: -1$/);
    await fails("SELECT pgmq.send_topic('a.b', '{}'::jsonb, NULL, -5)", [], /^delay cannot be negative, got: -5$/);
    await fails("SELECT pgmq.send_topic(NULL, '{}'::jsonb)", [], /^routing_key cannot be NULL or empty$/);
    await fails("SELECT pgmq.send_topic('', '{}'::jsonb)", [], /^routing_key cannot be NULL or empty$/);
    await fails(
      "SELECT pgmq.send_topic(repeat('a', 256), '{}'::jsonb)",
      [],
      /^routing_key length cannot exceed 255 characters, got 256 characters$/,
    );
    assert.deepEqual(await sql("SELECT pgmq.send_topic(repeat('a', 255), '{}'::jsonb) AS n"), [{ n: 0 }]);
  });

  test("send_batch_topic: NULL and empty arrays, mismatched headers, bad keys; nothing is sent", async () => {
    await sql("SELECT pgmq.bind_topic('batch.*', 'api_q')");
    try {
      await fails("SELECT * FROM pgmq.send_batch_topic('batch.x', NULL::jsonb[])", [], /^msgs cannot be NULL or empty$/);
      await fails("SELECT * FROM pgmq.send_batch_topic('batch.x', ARRAY[]::jsonb[])", [], /^msgs cannot be NULL or empty$/);
      await fails(
        "SELECT * FROM pgmq.send_batch_topic('batch.x', ARRAY['1', '2']::jsonb[], ARRAY['{}']::jsonb[])",
        [],
        /^headers array length \(1\) must match msgs array length \(2\)$/,
      );
      await fails(
        "SELECT * FROM pgmq.send_batch_topic('batch.x', ARRAY['1']::jsonb[], ARRAY[]::jsonb[], 0)",
        [],
        /^headers array length \(0\) must match msgs array length \(1\)$/,
      );
      await fails("SELECT * FROM pgmq.send_batch_topic('batch.*', ARRAY['1']::jsonb[])", [], /^routing_key contains invalid characters/);
      await fails("SELECT * FROM pgmq.send_batch_topic(NULL, ARRAY['1']::jsonb[])", [], /^routing_key cannot be NULL or empty$/);
      assert.equal((await bus.queues.metrics("api_q")).queueLength, 0);
      const sent = await sql<{ queue_name: string; msg_id: string }>(
        "SELECT * FROM pgmq.send_batch_topic('batch.x', ARRAY['1', '2']::jsonb[], ARRAY['{\"h\": 1}', NULL]::jsonb[], 0)",
      );
      assert.deepEqual(
        sent.map((row) => row.queue_name),
        ["api_q", "api_q"],
      );
    } finally {
      await sql("SELECT pgmq.unbind_topic('batch.*', 'api_q')");
      await sql("SELECT pgmq.purge_queue('api_q')");
    }
  });

  test("test_routing and list_topic_bindings: bad keys raise, unknown queues list nothing", async () => {
    await fails("SELECT * FROM pgmq.test_routing(NULL)", [], /^routing_key cannot be NULL or empty$/);
    await fails("SELECT * FROM pgmq.test_routing('a.#')", [], /^routing_key contains invalid characters/);
    assert.deepEqual(await sql("SELECT * FROM pgmq.list_topic_bindings('nope')"), []);
    assert.deepEqual(await sql("SELECT * FROM pgmq.list_topic_bindings(NULL)"), []);
  });
});

describe("queue functions on bad input", () => {
  test("send_batch: NULL or empty messages, headers of another length", async () => {
    for (const call of [
      "SELECT pgmq.send_batch('api_q', NULL::jsonb[])",
      "SELECT pgmq.send_batch('api_q', ARRAY[]::jsonb[])",
      "SELECT pgmq.send_batch('api_q', ARRAY[]::jsonb[], 5)",
      "SELECT pgmq.send_batch('api_q', NULL::jsonb[], ARRAY['{}']::jsonb[])",
    ]) {
      await fails(call, [], /^msgs cannot be NULL or empty$/);
    }
    await fails(
      "SELECT pgmq.send_batch('api_q', ARRAY['1','2']::jsonb[], ARRAY['{}']::jsonb[])",
      [],
      /^headers array length \(1\) must match msgs array length \(2\)$/,
    );
    await fails(
      "SELECT pgmq.send_batch('api_q', ARRAY['1']::jsonb[], ARRAY['{}','{}']::jsonb[], now())",
      [],
      /^headers array length \(2\) must match msgs array length \(1\)$/,
    );
    await fails("SELECT pgmq.send_batch('nope', ARRAY['1']::jsonb[])", [], /relation "pgmq\.q_nope" does not exist/);
    assert.equal((await bus.queues.metrics("api_q")).queueLength, 0);
  });

  test("unknown queues: every reading and writing function says the relation does not exist", async () => {
    for (const call of [
      "SELECT * FROM pgmq.read_with_poll('nope', 30, 1, 1, 10)",
      "SELECT * FROM pgmq.pop('nope', 5)",
      "SELECT * FROM pgmq.set_vt('nope', ARRAY[1]::bigint[], 0)",
      "SELECT * FROM pgmq.set_vt('nope', 1::bigint, now())",
      "SELECT * FROM pgmq.set_vt('nope', ARRAY[1]::bigint[], now())",
      "SELECT * FROM pgmq.read_grouped('nope', 30, 1)",
      "SELECT * FROM pgmq.read_grouped_rr('nope', 30, 1)",
      "SELECT * FROM pgmq.read_grouped_with_poll('nope', 30, 1, 1, 10)",
      "SELECT * FROM pgmq.read_grouped_rr_with_poll('nope', 30, 1, 1, 10)",
      "SELECT pgmq.create_fifo_index('nope')",
      "SELECT pgmq.purge_queue('nope')",
    ]) {
      await fails(call, [], /relation "pgmq\.q_nope" does not exist/);
    }
    // As in PGMQ: disabling what is not there is a notice, not an error.
    const disabled = await notices("SELECT pgmq.disable_notify_insert('nope')");
    assert.deepEqual(disabled.notices, ['NOTICE: relation "pgmq.q_nope" does not exist, skipping']);
  });

  test("NULL queue names and invalid characters: PGMQ's errors", async () => {
    await fails("SELECT * FROM pgmq.read_with_poll(NULL, 30, 1, 1, 10)", [], /null values cannot be formatted as an SQL identifier/);
    await fails("SELECT pgmq.create_unlogged(NULL)", [], /null values cannot be formatted as an SQL identifier/);
    for (const call of ["SELECT pgmq.create_unlogged($1)", "SELECT * FROM pgmq.pop($1, 2)", "SELECT * FROM pgmq.read_grouped($1, 1, 1)"]) {
      await fails(call, ["a;b"], /^queue name contains invalid characters: \$, ;, --, or \\'$/);
    }
    await fails("SELECT pgmq.create_unlogged(repeat('u', 48))", [], /^queue name is too long, maximum length is 47 characters$/);
  });

  test("empty and NULL id arrays change nothing; pop with qty 0 returns nothing", async () => {
    await bus.queues.send("api_q", { n: 1 });
    assert.deepEqual(await sql("SELECT * FROM pgmq.set_vt('api_q', ARRAY[]::bigint[], 100)"), []);
    assert.deepEqual(await sql("SELECT * FROM pgmq.set_vt('api_q', NULL::bigint[], now())"), []);
    assert.deepEqual(await sql("SELECT * FROM pgmq.pop('api_q', 0)"), []);
    assert.equal((await sql("SELECT * FROM pgmq.pop('api_q', 5)")).length, 1);
  });

  test("read_with_poll waits for a message sent meanwhile, and gives up after max_poll_seconds", async () => {
    const started = Date.now();
    assert.deepEqual(await sql("SELECT * FROM pgmq.read_with_poll('api_q', 30, 1, 1, 50)"), []);
    assert.ok(Date.now() - started >= 900, "polled about a second");
    const polling = sql<{ msg_id: string }>("SELECT msg_id FROM pgmq.read_with_poll('api_q', 30, 5, 5, 50)");
    await new Promise((resolve) => setTimeout(resolve, 300));
    const id = await bus.queues.send("api_q", { late: true });
    assert.deepEqual(
      (await polling).map((row) => row.msg_id),
      [id],
    );
    await sql("SELECT pgmq.purge_queue('api_q')");
  });

  test("create_partitioned and convert_archive_partitioned without pg_partman; convert of an unknown queue", async () => {
    const installed = await sql("SELECT 1 FROM pg_extension WHERE extname = 'pg_partman'");
    assert.equal(installed.length, 0, "this database has no pg_partman");
    await fails("SELECT pgmq.create_partitioned('api_part')", [], /^pg_partman is required for partitioned queues$/);
    // PGMQ itself fails here on formatting pg_partman's (missing) schema name, after renaming
    // the archive (rolled back with the statement); pgbus's schema names the cause instead.
    await fails(
      "SELECT pgmq.convert_archive_partitioned('api_q')",
      [],
      /^(pg_partman is required for partitioned queues|null values cannot be formatted as an SQL identifier)$/,
    );
    const unknown = await notices("SELECT pgmq.convert_archive_partitioned('nope')");
    assert.deepEqual(unknown.notices, ["NOTICE: Table a_nopes does not exists"]);
  });

  test("drop_queue(name, partitioned) and detach_archive warn that they are deprecated", async () => {
    await bus.queues.createQueue("api_old", { deadLetterQueue: false });
    const dropped = await notices("SELECT pgmq.drop_queue('api_old', false) AS dropped");
    assert.deepEqual(dropped.rows, [{ dropped: true }]);
    assert.match(dropped.notices.join("\n"), /WARNING: drop_queue\(queue_name, partitioned\) is deprecated/);
    const missing = await notices("SELECT pgmq.drop_queue('api_old') AS dropped");
    assert.deepEqual(missing.rows, [{ dropped: false }]);
    assert.deepEqual(missing.notices, ["NOTICE: pgmq queue `api_old` does not exist"]);
    const detached = await notices("SELECT pgmq.detach_archive('api_q')");
    assert.match(detached.notices.join("\n"), /WARNING: detach_archive\(queue_name\) is deprecated and is a no-op/);
  });
});

describe("insert notifications", () => {
  test("enable/update_notify_insert: unknown queues, negative throttles, not enabled", async () => {
    await fails("SELECT pgmq.enable_notify_insert('nope')", [], /^Queue "nope" does not exist\. Create it first using pgmq\.create\(\)$/);
    await fails("SELECT pgmq.enable_notify_insert('api_q', -1)", [], /^throttle_interval_ms must be non-negative$/);
    await fails("SELECT pgmq.update_notify_insert('api_q', -1)", [], /^throttle_interval_ms must be non-negative, got: -1$/);
    await fails(
      "SELECT pgmq.update_notify_insert('nope', 10)",
      [],
      /^Queue "nope" does not exist\. Create the queue first using pgmq\.create\(\)$/,
    );
    await fails(
      "SELECT pgmq.update_notify_insert('api_q', 10)",
      [],
      /^Queue "api_q" does not have notify_insert enabled\. Enable it first using pgmq\.enable_notify_insert\(\)$/,
    );
    assert.deepEqual(await sql("SELECT * FROM pgmq.list_notify_insert_throttles()"), []);
  });

  test("PGMQ's notification arrives on pgmq.q_<queue>.INSERT, and pgbus's own wake-up still arrives beside it", async () => {
    await sql("SELECT pgmq.enable_notify_insert('api_r', 0)");
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    const heard: string[] = [];
    listener.on("notification", (n) => heard.push(`${n.channel}:${n.payload ?? ""}`));
    try {
      await listener.query('LISTEN "pgmq.q_api_r.INSERT"');
      await listener.query("LISTEN pgbus_queue");
      await bus.queues.send("api_r", { n: 1 });
      const deadline = Date.now() + 5_000;
      while (heard.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.deepEqual(heard.sort(), ["pgbus_queue:api_r", "pgmq.q_api_r.INSERT:"]);
      assert.deepEqual(
        (
          await sql<{ queue_name: string; throttle_interval_ms: number }>(
            "SELECT queue_name, throttle_interval_ms FROM pgmq.list_notify_insert_throttles()",
          )
        ).map((row) => [row.queue_name, row.throttle_interval_ms]),
        [["api_r", 0]],
      );
    } finally {
      await listener.end();
      await sql("SELECT pgmq.disable_notify_insert('api_r')");
      await sql("SELECT pgmq.purge_queue('api_r')");
    }
  });
});
