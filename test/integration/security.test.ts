import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { parseQueueDsl } from "../../src/config/queue-dsl.ts";
import { resolveConfig } from "../../src/config/schema.ts";
import { PgbusError, type PgbusErrorCode } from "../../src/errors.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { QueueClient } from "../../src/queue/client.ts";
import { cliEnv, runCli, waitFor } from "../fixtures/process/spawn.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";

/**
 * SQL injection attempts through every name and value pgbus turns into SQL. Identifiers
 * (queue names, job names, routing keys, message ids) must be refused with a typed error
 * before any SQL is built, by the TypeScript client and by the SQL functions any PGMQ
 * client calls; values (payloads, headers, error messages) must round-trip byte for byte.
 * Afterwards pgmq.meta and every queue table must still be there.
 */

/** SQL smuggled into an identifier: refused as a queue name, job name and routing key alike. */
const INJECTIONS = [
  "'); drop table pgmq.meta; --",
  '"; drop table pgmq.meta; --',
  "x'; drop table pgmq.meta; select '",
  "$$; drop table pgmq.meta; $$",
  "$1",
  "q); drop table pgmq.meta; --",
  "q_x; select pg_sleep(5)",
  'work" OR "1"="1',
  "' OR '1'='1",
  "\\'; drop table pgmq.meta; --",
  "%I%s%L",
  "../../etc/passwd",
  "",
];

/** Not valid queue names either (some are fine job names or routing keys: dots, capitals, length). */
const ATTACKS = [...INJECTIONS, "Work", "wörk", "ｗork", "work\n", " work", "work;", "pgmq.meta", "a".repeat(48)];

/** Values that must come back exactly as sent. */
const VALUES = [
  "'); drop table pgmq.meta; --",
  "$$ drop table pgmq.meta $$",
  "$1 $2 $$",
  "it's \"quoted\" `back` \\ \\\\ \\'",
  "%s %I %L {} []",
  "line\nbreak\r\ttab",
  "\u2028\u2029 \u202e rtl \ud83d\udca3 emoji \u00e9\u0301",
  "' || pg_sleep(5) || '",
  "--",
  "/* comment */",
];

let db: TestDatabase;
let queues: QueueClient;
let bus: Pgbus;
const received: unknown[] = [];

const echo = defineJob<unknown>({
  name: "echo",
  queue: "sec",
  maxRetries: 0,
  perform(payload) {
    received.push(payload);
    const attack = (payload as { fail?: string } | null)?.fail;
    if (attack !== undefined) throw new Error(attack);
  },
});

before(async () => {
  db = await createTestDatabase("security");
  bus = new Pgbus({ connectionString: db.url, jobs: [echo] });
  await bus.migrate();
  queues = new QueueClient(db.pool, { prepared: true });
  await queues.createQueue("sec");
  await queues.createQueue("work");
});

after(async () => {
  try {
    await bus.close();
  } finally {
    await db.drop();
  }
});

function typed(code: PgbusErrorCode, value: string) {
  return (error: unknown): true => {
    assert.ok(error instanceof PgbusError, `a PgbusError for ${JSON.stringify(value)}, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return true;
  };
}

async function schemaIntact(): Promise<void> {
  const meta = (await db.pool.query("SELECT to_regclass('pgmq.meta') AS t")).rows[0].t;
  assert.equal(meta, "pgmq.meta", "pgmq.meta still exists");
  const names = (await db.pool.query("SELECT queue_name FROM pgmq.meta ORDER BY 1")).rows.map((row) => row.queue_name as string);
  assert.deepEqual(names, ["sec", "sec_dlq", "work", "work_dlq"], "no queue created or dropped by an attack");
  for (const name of names) {
    for (const prefix of ["q_", "a_"]) {
      const table = (await db.pool.query("SELECT to_regclass($1) AS t", [`pgmq.${prefix}${name}`])).rows[0].t;
      assert.equal(table, `pgmq.${prefix}${name}`);
    }
  }
}

describe("identifiers are refused before any SQL is built", () => {
  test("queue names through the queue client: INVALID_QUEUE_NAME for every operation", async () => {
    for (const name of ATTACKS) {
      const refused = typed("INVALID_QUEUE_NAME", name);
      await assert.rejects(queues.createQueue(name), refused);
      await assert.rejects(queues.send(name, { a: 1 }), refused);
      await assert.rejects(queues.sendBatch(name, [{ a: 1 }]), refused);
      await assert.rejects(queues.read(name, 30, 1), refused);
      await assert.rejects(queues.pop(name), refused);
      await assert.rejects(queues.setVt(name, 1, 0), refused);
      await assert.rejects(queues.archive(name, 1), refused);
      await assert.rejects(queues.delete(name, [1]), refused);
      await assert.rejects(queues.metrics(name), refused);
      await assert.rejects(queues.purgeQueue(name), refused);
      await assert.rejects(queues.dropQueue(name), refused);
      await assert.rejects(queues.moveToDeadLetterQueue(name, 1, { name: "E", message: "m" }), refused);
      await assert.rejects(queues.queueExists(name), refused);
    }
    await schemaIntact();
  });

  test("queue names through pgmq's SQL functions (any PGMQ client): PGMQ's rule, and never SQL", async () => {
    // PGMQ's rule (pgmq.format_table_name): a name with $, ;, -- or ' is refused; any other
    // name is a quoted identifier (q_<lower-cased name>), so it can only name a table.
    const forbidden = (name: string) => /[$;']|--/.test(name);
    const calls = [
      "SELECT pgmq.send($1, '{}'::jsonb)",
      "SELECT pgmq.send_batch($1, ARRAY['{}'::jsonb])",
      "SELECT * FROM pgmq.read($1, 30, 1)",
      "SELECT * FROM pgmq.read_with_poll($1, 30, 1, 1, 10)",
      "SELECT * FROM pgmq.read_grouped($1, 30, 1)",
      "SELECT * FROM pgmq.pop($1)",
      "SELECT * FROM pgmq.set_vt($1, 1, 0)",
      "SELECT pgmq.archive($1, 1::bigint)",
      "SELECT pgmq.delete($1, 1::bigint)",
      "SELECT pgmq.purge_queue($1)",
      "SELECT * FROM pgmq.metrics($1)",
      "SELECT pgmq.enable_notify_insert($1)",
      "SELECT pgmq.bind_topic('orders.created', $1)",
    ];
    for (const name of INJECTIONS) {
      for (const call of calls) {
        // bind_topic looks the name up in pgmq.meta, without building an identifier
        const expected = call.includes("bind_topic")
          ? /does not exist|queue_name cannot be NULL or empty/
          : forbidden(name)
            ? /queue name contains invalid characters/
            : /does not exist/;
        await assert.rejects(db.pool.query(call, [name]), (e: unknown) => {
          assert.match(String(e), expected, `${call} ${JSON.stringify(name)}`);
          return true;
        });
      }
    }
    await schemaIntact();
    for (const name of INJECTIONS) {
      if (forbidden(name)) {
        await assert.rejects(db.pool.query("SELECT pgmq.create($1)", [name]), /queue name contains invalid characters/);
        await assert.rejects(db.pool.query("SELECT pgmq.drop_queue($1)", [name]), /queue name contains invalid characters/);
        continue;
      }
      // A legal PGMQ name, however odd: its tables are named after it, literally.
      await db.pool.query("SELECT pgmq.create($1)", [name]);
      const table = (await db.pool.query("SELECT to_regclass(format('pgmq.%I', 'q_' || lower($1))) AS t", [name])).rows[0].t;
      assert.ok(table, `pgmq.create(${JSON.stringify(name)}) made its table`);
      assert.equal((await db.pool.query("SELECT pgmq.drop_queue($1) AS dropped", [name])).rows[0].dropped, true);
    }
    await assert.rejects(
      db.pool.query("SELECT pgmq.create($1)", ["a".repeat(48)]),
      /queue name is too long, maximum length is 47 characters/,
    );
    await schemaIntact();
  });

  test("queue names in workers, job definitions, config, the queue DSL and the CLI: typed errors naming the value", async () => {
    for (const name of ATTACKS) {
      assert.throws(() => bus.worker({ queues: [name] }), typed("INVALID_QUEUE_NAME", name));
      assert.throws(() => defineJob({ name: "ok_name", queue: name, perform() {} }), typed("INVALID_QUEUE_NAME", name));
      assert.throws(() => resolveConfig({ databaseUrl: db.url, workers: [{ queues: [name] }] }, "cfg"), typed("INVALID_CONFIG", name));
      // The DSL trims whitespace around names and splits on ";", ":" and ",".
      if (name.trim() === name && name !== "" && !/[;:,]/.test(name))
        assert.throws(() => parseQueueDsl(`${name}: 2`), typed("INVALID_QUEUE_DSL", name));
    }
    const attack = ATTACKS[0]!;
    for (const args of [
      ["dlq", "list", attack],
      ["queues", "--json"],
      ["enqueue", "echo", "{}", "--queue", attack],
    ]) {
      const result = await runCli(args, cliEnv(db.url));
      if (args[0] === "queues") {
        assert.equal(result.code, 0, result.stderr);
        continue;
      }
      assert.equal(result.code, 1, `${args.join(" ")}: ${result.stdout}`);
      assert.match(result.stderr, /invalid queue name/, result.stderr);
    }
    await schemaIntact();
  });

  test("job names: INVALID_JOB_NAME at definition; a hand-made message naming an evil job is dead-lettered, its name kept byte for byte", async () => {
    for (const name of [...INJECTIONS, "Job", "jöb", "a".repeat(101)])
      assert.throws(() => defineJob({ name, perform() {} }), typed("INVALID_JOB_NAME", name));
    const sent = await Promise.all(VALUES.map((job) => queues.send("sec", { job, payload: {} })));
    const worker = bus.worker({ queues: ["sec"], capacity: 5, pollIntervalMs: 100 });
    await worker.start();
    try {
      await waitFor(async () => (await queues.metrics("sec_dlq")).queueLength === VALUES.length, "every evil job name dead-lettered");
    } finally {
      await worker.stop();
    }
    const dead = (
      await db.pool.query("SELECT message ->> 'job' AS job, headers -> 'pgbus_error' ->> 'reason' AS reason FROM pgmq.q_sec_dlq")
    ).rows;
    assert.deepEqual(dead.map((row) => row.job).sort(), [...VALUES].sort());
    assert.deepEqual(new Set(dead.map((row) => row.reason)), new Set(["unknown_job"]));
    const recorded = (await db.pool.query("SELECT job FROM pgbus.failed_jobs WHERE msg_id = ANY($1::bigint[])", [sent])).rows.map(
      (row) => row.job,
    );
    assert.deepEqual(recorded.sort(), [...VALUES].sort(), "failed_jobs keeps the names as they were");
    await bus.queues.purgeQueue("sec_dlq");
    await schemaIntact();
  });

  test("routing keys and topic patterns: pgmq.send_topic / bind_topic refuse them with PGMQ's errors; bus.publish with INVALID_ROUTING_KEY", async () => {
    for (const key of [...INJECTIONS, "a..b", ".a", "a.", "wörk", "a b", "a\n", "a".repeat(256)]) {
      await assert.rejects(db.pool.query("SELECT pgmq.send_topic($1, '{}'::jsonb)", [key]), /routing_key (cannot|contains|length)/);
      await assert.rejects(db.pool.query("SELECT pgmq.bind_topic($1, 'sec')", [key]), /pattern (cannot|contains|length)/);
      await assert.rejects(bus.publish(key, { a: 1 }), typed("INVALID_ROUTING_KEY", key));
    }
    assert.equal(Number((await db.pool.query("SELECT count(*) AS n FROM pgmq.topic_bindings")).rows[0].n), 0);
    await schemaIntact();
  });

  test("message ids: INVALID_OPTION for anything but a positive integer", async () => {
    for (const id of ["1; drop table pgmq.meta", "1) OR (1=1", "-1", "0", "1e3", "0x10", "", " 1"]) {
      const refused = typed("INVALID_OPTION", id);
      await assert.rejects(queues.setVt("sec", id, 0), refused);
      await assert.rejects(queues.archive("sec", [id]), refused);
      await assert.rejects(queues.delete("sec", id), refused);
      await assert.rejects(queues.moveToDeadLetterQueue("sec", id, { name: "E", message: "m" }), refused);
    }
    const result = await runCli(["dlq", "retry", "sec", "1;drop table pgmq.meta"], cliEnv(db.url));
    assert.equal(result.code, 1);
    assert.match(result.stderr, /invalid message id/);
    await schemaIntact();
  });
});

describe("values round-trip byte for byte", () => {
  const payload = Object.fromEntries(VALUES.map((value, index) => [value, { index, value, list: [value, index] }]));

  test("payloads and headers through send / read and sendBatch", async () => {
    const headers = Object.fromEntries(VALUES.map((value) => [value, value]));
    const one = await queues.send("work", payload, { headers });
    const batch = await queues.sendBatch("work", VALUES, { headers: VALUES.map((value) => ({ h: value })) });
    const read = await queues.read("work", 30, 100);
    const byId = new Map(read.map((message) => [message.msgId, message]));
    assert.deepStrictEqual(byId.get(one)?.message, payload);
    assert.deepStrictEqual(byId.get(one)?.headers, headers);
    batch.forEach((id, index) => {
      assert.strictEqual(byId.get(id)?.message, VALUES[index]);
      assert.deepStrictEqual(byId.get(id)?.headers, { h: VALUES[index] });
    });
    // What PostgreSQL stored is the same text, not something re-interpreted on the way in.
    for (const [index, id] of batch.entries()) {
      const stored = (await db.pool.query("SELECT message #>> '{}' AS text FROM pgmq.q_work WHERE msg_id = $1", [id])).rows[0].text;
      assert.strictEqual(stored, VALUES[index]);
    }
    await queues.purgeQueue("work");
    await schemaIntact();
  });

  test("payloads through pgmq.send and send_topic in SQL, read back by the client", async () => {
    await db.pool.query("SELECT pgmq.bind_topic('sec.#', 'work')");
    try {
      for (const value of VALUES) {
        await db.pool.query("SELECT pgmq.send('work', $1::jsonb, $2::jsonb)", [JSON.stringify({ value }), JSON.stringify({ value })]);
        await db.pool.query("SELECT pgmq.send_topic('sec.value', $1::jsonb)", [JSON.stringify({ value })]);
      }
      const read = await queues.read("work", 30, 100);
      assert.equal(read.length, VALUES.length * 2);
      assert.deepStrictEqual(read.map((message) => (message.message as { value: string }).value).sort(), [...VALUES, ...VALUES].sort());
    } finally {
      await db.pool.query("SELECT pgmq.unbind_topic('sec.#', 'work')");
      await queues.purgeQueue("work");
    }
    await schemaIntact();
  });

  test("enqueue to a handler, and an error message to the DLQ, byte for byte", async () => {
    received.length = 0;
    await bus.enqueue(echo, payload);
    const failing = await bus.enqueue(echo, { fail: VALUES.join(" | ") });
    const worker = bus.worker({ queues: ["sec"], capacity: 5, pollIntervalMs: 100 });
    await worker.start();
    try {
      await waitFor(async () => received.length === 2 && (await queues.metrics("sec_dlq")).queueLength === 1, "both runs");
    } finally {
      await worker.stop();
    }
    assert.deepStrictEqual(received[0], payload);
    const [dead] = await queues.read("sec_dlq", 30, 1);
    assert.strictEqual((dead?.headers?.["pgbus_error"] as { message: string }).message, VALUES.join(" | "));
    assert.strictEqual(dead?.headers?.["pgbus_source_msg_id"], failing);
    await bus.queues.purgeQueue("sec_dlq");
    await schemaIntact();
  });

  test("a NUL character, which jsonb cannot store, is refused with INVALID_PAYLOAD instead of a database error", async () => {
    await assert.rejects(queues.send("work", { a: "nul\u0000here" }), typed("INVALID_PAYLOAD", "nul"));
    await assert.rejects(queues.send("work", {}, { headers: { a: "\u0000" } }), typed("INVALID_PAYLOAD", "nul header"));
    await schemaIntact();
  });
});
