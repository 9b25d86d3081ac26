import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { drizzle } from "drizzle-orm/node-postgres";
import knexFactory, { type Knex } from "knex";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { Pgbus } from "../../src/bus.ts";
import type { Queryable } from "../../src/db/queryable.ts";
import { fromDrizzle, fromKnex, fromKysely, splitPlaceholders, toArrayLiteral } from "../../src/events/orm.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

let db: TestDatabase;
let bus: Pgbus;
let kysely: Kysely<{ orders: { id: number } }>;
let drizzleDb: ReturnType<typeof drizzle>;
let knex: Knex;
let ormPool: pg.Pool;

const txJob = defineJob<{ order: number }>({ name: "tx_job", queue: "tx_jobs", perform() {} });

before(async () => {
  db = await createTestDatabase("ev_tx");
  bus = new Pgbus({ connectionString: db.url, jobs: [txJob] });
  bus.subscribe("tx.#", () => {}, { name: "tx_sink" });
  await bus.migrate();
  await db.pool.query("CREATE TABLE orders (id int PRIMARY KEY)");
  ormPool = new pg.Pool({ connectionString: db.url, max: 4 });
  ormPool.on("error", () => {});
  kysely = new Kysely({ dialect: new PostgresDialect({ pool: ormPool }) });
  drizzleDb = drizzle(ormPool);
  knex = knexFactory({ client: "pg", connection: db.url, pool: { min: 0, max: 2 } });
});
after(async () => {
  await knex.destroy();
  await kysely.destroy(); // ends ormPool
  await bus.close();
  await db.drop();
});
beforeEach(async () => {
  await db.pool.query("TRUNCATE orders, pgbus.outbox");
  await bus.queues.purgeQueue("ev_tx_sink");
  await bus.queues.purgeQueue("tx_jobs");
});

const count = async (text: string) => Number((await db.pool.query(text)).rows[0].n);

/** What each transaction writes: an order of its own, an event, an outbox event, an outbox job and a direct job. */
async function writeEverything(client: Queryable, order: number): Promise<void> {
  await client.query("INSERT INTO orders (id) VALUES ($1)", [order]);
  const event = await bus.publish("tx.order.created", { order }, { client, headers: { source: "test" } });
  assert.equal(event.queues, 1);
  await bus.outbox.publish("tx.order.paid", { order }, { client });
  await bus.outbox.enqueue(txJob, { order }, { client });
  await bus.enqueue(txJob, { order }, { client });
}

async function assertCommitted(order: number): Promise<void> {
  assert.equal(await count(`SELECT count(*) AS n FROM orders WHERE id = ${order}`), 1);
  assert.equal(await count("SELECT count(*) AS n FROM pgmq.q_ev_tx_sink"), 1);
  assert.equal(await count("SELECT count(*) AS n FROM pgbus.outbox"), 2);
  assert.equal(await count("SELECT count(*) AS n FROM pgmq.q_tx_jobs"), 1);
}

async function assertNothing(): Promise<void> {
  assert.equal(await count("SELECT count(*) AS n FROM orders"), 0);
  assert.equal(await count("SELECT count(*) AS n FROM pgmq.q_ev_tx_sink"), 0);
  assert.equal(await count("SELECT count(*) AS n FROM pgbus.outbox"), 0);
  assert.equal(await count("SELECT count(*) AS n FROM pgmq.q_tx_jobs"), 0);
}

class Rollback extends Error {}

describe("publish, outbox and enqueue join the caller's transaction", () => {
  test("pg PoolClient: commit keeps everything, rollback leaves nothing", async () => {
    const client = await db.pool.connect();
    try {
      await client.query("BEGIN");
      await writeEverything(client, 1);
      await client.query("ROLLBACK");
      await assertNothing();
      await client.query("BEGIN");
      await writeEverything(client, 2);
      await client.query("COMMIT");
      await assertCommitted(2);
    } finally {
      client.release();
    }
  });

  /** Each ORM's transaction runner, with pgbus's adapter over the transaction it hands out. */
  const ormTransactions: Array<[string, (work: (client: Queryable) => Promise<void>) => Promise<unknown>]> = [
    ["Kysely (fromKysely)", (work) => kysely.transaction().execute((trx) => work(fromKysely(trx)))],
    ["Drizzle (fromDrizzle)", (work) => drizzleDb.transaction((tx) => work(fromDrizzle(tx)))],
    ["Knex (fromKnex)", (work) => knex.transaction((trx) => work(fromKnex(trx)))],
  ];
  ormTransactions.forEach(([name, inTransaction], index) => {
    test(`${name}: commit keeps everything, rollback leaves nothing`, async () => {
      const order = 3 + index * 2;
      await assert.rejects(
        inTransaction(async (client) => {
          await writeEverything(client, order);
          throw new Rollback();
        }),
        Rollback,
      );
      await assertNothing();
      await inTransaction((client) => writeEverything(client, order + 1));
      await assertCommitted(order + 1);
    });
  });

  test("the stored event is snake_case JSON with the headers as given; delayMs delays every copy", async () => {
    const event = await bus.publish("tx.shape", { a: [1, "two"] }, { headers: { trace: "t-1", n: 2 } });
    const { rows } = await db.pool.query("SELECT message, headers, vt > clock_timestamp() AS delayed FROM pgmq.q_ev_tx_sink");
    assert.deepEqual(rows, [
      {
        message: {
          event_id: event.eventId,
          routing_key: "tx.shape",
          payload: { a: [1, "two"] },
          published_at: event.publishedAt.toISOString(),
        },
        headers: { trace: "t-1", n: 2 },
        delayed: false,
      },
    ]);
    assert.match(event.eventId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    await bus.publish("tx.later", {}, { delayMs: 1_500 });
    const later = await db.pool.query(
      "SELECT extract(epoch FROM vt - enqueued_at) AS secs FROM pgmq.q_ev_tx_sink WHERE message->>'routing_key' = 'tx.later'",
    );
    assert.ok(Number(later.rows[0].secs) >= 1.9, `rounded up to 2 s, got ${later.rows[0].secs}`);
    assert.equal((await bus.publish("nobody.listens", {})).queues, 0);
  });
});

describe("ORM adapters pass parameters as parameters", () => {
  const probe = "SELECT $1::bigint[] AS ids, $2::text AS text, $1::bigint[] AS again, $3::jsonb AS doc, 'why?' AS literal";
  const values = [["1", "22"], 'it\'s a $1 "quote" ?', '{"k": [1, null]}'];
  const expected = { ids: ["1", "22"], text: 'it\'s a $1 "quote" ?', again: ["1", "22"], doc: { k: [1, null] }, literal: "why?" };

  test("splitPlaceholders and toArrayLiteral", () => {
    assert.deepEqual(splitPlaceholders("a $1::int, $12 $1"), ["a ", 1, "::int, ", 12, " ", 1]);
    assert.equal(toArrayLiteral(["1", null, 'a"b\\c']), '{"1",NULL,"a\\"b\\\\c"}');
  });

  test("fromKysely", async () => {
    const { rows } = await kysely.transaction().execute((trx) => fromKysely(trx).query(probe, values));
    assert.deepEqual(rows, [expected]);
  });

  test("fromDrizzle", async () => {
    const { rows } = await drizzleDb.transaction((tx) => fromDrizzle(tx).query(probe, values));
    assert.deepEqual(rows, [expected]);
  });

  test("fromKnex", async () => {
    const { rows } = await knex.transaction((trx) => fromKnex(trx).query(probe, values));
    assert.deepEqual(rows, [expected]);
  });

  test("adapters reject values that are not transactions", () => {
    assert.throws(() => fromKysely({} as never), /fromKysely needs a Kysely transaction/);
    assert.throws(() => fromDrizzle(null as never), /fromDrizzle needs a Drizzle transaction/);
    assert.throws(() => fromKnex({} as never), /fromKnex needs a Knex transaction/);
  });
});
