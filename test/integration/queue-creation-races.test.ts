/**
 * Queue creation under concurrency (issue #12): several real processes hit every path that
 * creates a queue on first use or sets one up (enqueue, enqueueMany, enqueue inside the
 * caller's transaction, createQueue, migrate, subscriber setup, publish to new
 * subscribers, the `*` worker's listing, dropQueue) at the same moment. Each test checks
 * that no caller saw an error except a documented one, that nothing was lost or
 * duplicated, and that the schema ends consistent.
 *
 * PGBUS_RACE_ROUNDS sets the rounds of the 4 x 5 enqueue burst (default 100); a longer
 * soak is that variable set higher.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type pg from "pg";
import { Pgbus } from "../../src/bus.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { queueOverview } from "../../src/queue/admin.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { type Actor, errorsOf, startActors } from "../fixtures/races/actors.ts";
import type { CallResult } from "../fixtures/races/protocol.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

const ACTORS = 4;
const ROUNDS = Number(process.env.PGBUS_RACE_ROUNDS ?? 100);

let db: TestDatabase;
let actors: Actor[];

before(async () => {
  db = await createTestDatabase("races");
  await migrate(db.pool);
  actors = await startActors(ACTORS, db.url);
});
after(async () => {
  await Promise.all((actors ?? []).map((actor) => actor.stop()));
  await db.drop();
});

/**
 * How the schema differs from complete queues (empty when consistent): each listed queue
 * has its table, archive and insert trigger; each queue that has room for one has its DLQ;
 * no queue or archive table is unlisted; no binding points at a missing queue.
 */
async function schemaProblems(pool: pg.Pool): Promise<string[]> {
  const { rows } = await pool.query<{ problem: string }>(`
    WITH queues AS (SELECT queue_name::text AS name FROM pgmq.meta),
    tables AS (SELECT relname::text AS name, oid FROM pg_class
                WHERE relnamespace = 'pgmq'::regnamespace AND relkind IN ('r', 'p') AND NOT relispartition AND relname ~ '^[qa]_')
    SELECT 'no table q_' || q.name AS problem FROM queues q WHERE to_regclass(format('pgmq.%I', 'q_' || q.name)) IS NULL
    UNION ALL SELECT 'no archive a_' || q.name FROM queues q WHERE to_regclass(format('pgmq.%I', 'a_' || q.name)) IS NULL
    UNION ALL SELECT 'no insert trigger on q_' || q.name FROM queues q
     WHERE NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgname = 'pgbus_notify_insert'
                          AND t.tgrelid = to_regclass(format('pgmq.%I', 'q_' || q.name)))
    UNION ALL SELECT 'no DLQ for ' || q.name FROM queues q
     WHERE q.name NOT LIKE '%\\_dlq' AND length(q.name) <= 43 AND NOT EXISTS (SELECT 1 FROM queues d WHERE d.name = q.name || '_dlq')
    UNION ALL SELECT 'unlisted table ' || t.name FROM tables t
     WHERE NOT EXISTS (SELECT 1 FROM queues q WHERE t.name IN ('q_' || q.name, 'a_' || q.name))
    UNION ALL SELECT 'binding ' || b.pattern || ' -> missing queue ' || b.queue_name FROM pgmq.topic_bindings b
     WHERE NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = b.queue_name)
    ORDER BY 1`);
  return rows.map((row) => row.problem);
}

/** The messages in a queue: id, and `<tag>/<n>` of the payload the actor gave the job. */
async function messagesIn(queue: string, pool: pg.Pool = db.pool): Promise<Array<{ id: string; key: string }>> {
  const { rows } = await pool.query<{ id: string; key: string }>(
    `SELECT msg_id::text AS id, concat(message -> 'payload' ->> 'tag', '/', message -> 'payload' ->> 'n') AS key
       FROM pgmq.${JSON.stringify(`q_${queue}`)} ORDER BY msg_id`,
  );
  return rows;
}

async function queueNames(prefix: string): Promise<string[]> {
  const { rows } = await db.pool.query<{ name: string }>(
    "SELECT queue_name::text AS name FROM pgmq.meta WHERE queue_name LIKE $1 ORDER BY 1",
    [`${prefix}%`],
  );
  return rows.map((row) => row.name);
}

const okValues = (results: CallResult[]): unknown[] => results.flatMap((result) => (result.error ? [] : [result.ok]));

describe("first enqueues into a new queue from many processes", () => {
  test(`4 processes x 5 concurrent enqueues into a new queue: every enqueue succeeds, ${ROUNDS} rounds`, async () => {
    const failures: string[] = [];
    for (let round = 0; round < ROUNDS; round += 1) {
      const queue = `burst_${round}`;
      const results = (await Promise.all(actors.map((actor, a) => actor.send({ op: "enqueue", queue, calls: 5, tag: `a${a}` })))).flat();
      failures.push(...errorsOf(results).map((error) => `round ${round}: ${error}`));
      const ids = okValues(results) as string[];
      const stored = await messagesIn(queue);
      assert.deepEqual(
        stored.map((row) => row.id).sort(),
        [...ids].sort(),
        `round ${round}: the queue holds exactly the enqueued messages`,
      );
      assert.equal(new Set(stored.map((row) => row.key)).size, stored.length, `round ${round}: no job is in the queue twice`);
    }
    assert.deepEqual(failures.slice(0, 5), [], `${failures.length} of ${ROUNDS * ACTORS * 5} enqueues failed`);
    assert.deepEqual(await schemaProblems(db.pool), []);
  });
});

describe("every other way a queue is made, all at once", () => {
  test("enqueueMany, createQueue, enqueue, and enqueues in transactions that commit or roll back, into one new queue", async () => {
    const failures: string[] = [];
    for (let round = 0; round < 12; round += 1) {
      const queue = `mixed_${round}`;
      const [many, created, tx, single] = await Promise.all([
        actors[0]!.send({ op: "enqueueMany", queue, calls: 3, batch: 4, tag: "many" }),
        actors[1]!.send({ op: "createQueue", queue, calls: 3 }),
        actors[2]!.send({ op: "enqueueTx", queue, calls: 4, tag: "tx", rollback: "odd" }),
        actors[3]!.send({ op: "enqueue", queue, calls: 3, tag: "one" }),
      ]);
      failures.push(...[many!, created!, tx!, single!].flatMap(errorsOf).map((error) => `round ${round}: ${error}`));
      const reported = [
        ...(okValues(many!) as string[][]).flat(),
        ...(okValues(tx!) as string[][]).flat(),
        ...(okValues(single!) as string[]),
      ];
      assert.equal(reported.length, 12 + 2 + 3, `round ${round}: every call reported its ids (rolled-back ones none)`);
      assert.deepEqual(
        (await messagesIn(queue)).map((row) => row.id).sort(),
        reported.sort(),
        `round ${round}: exactly the committed messages`,
      );
    }
    assert.deepEqual(failures, []);
    assert.deepEqual(await schemaProblems(db.pool), []);
  });

  test("queues created in transactions that all roll back leave nothing behind; the next enqueue makes them", async () => {
    for (let round = 0; round < 3; round += 1) {
      const queue = `rolled_back_${round}`;
      const results = await Promise.all(
        actors.map((actor) => actor.send({ op: "enqueueTx", queue, calls: 3, tag: "tx", rollback: "all" })),
      );
      assert.deepEqual(results.flatMap(errorsOf), []);
      const left = await db.pool.query("SELECT 1 FROM pg_class WHERE relnamespace = 'pgmq'::regnamespace AND relname LIKE $1", [
        `%${queue}%`,
      ]);
      assert.equal(left.rowCount, 0, `round ${round}: no table, index or sequence of ${queue} is left`);
      assert.deepEqual(await queueNames(queue), []);
      const [id] = okValues(await actors[round % ACTORS]!.send({ op: "enqueue", queue, calls: 1, tag: "after" }));
      assert.deepEqual(
        (await messagesIn(queue)).map((row) => row.id),
        [id],
      );
    }
    assert.deepEqual(await schemaProblems(db.pool), []);
  });
});

describe("setup paths: migrate, subscribers, publish, the `*` listing", () => {
  test("every process migrates a fresh database at once, with its job queues and subscribers", async () => {
    for (let round = 0; round < 2; round += 1) {
      const fresh = await createTestDatabase("races_migrate");
      try {
        const queues = ["mig_a", "mig_b"];
        const subscribers = [
          { name: "mig_audit", pattern: "mig.#" },
          { name: "mig_mail", pattern: "mig.*.created" },
        ];
        const results = await Promise.all(
          actors.map((actor) => actor.send({ op: "migrate", calls: 2, queues, subscribers, url: fresh.url })),
        );
        assert.deepEqual(results.flatMap(errorsOf), [], `round ${round}`);
        const applied = (okValues(results.flat()) as string[][]).flat();
        const { rows } = await fresh.pool.query<{ count: number }>("SELECT count(*)::int AS count FROM pgbus.schema_migrations");
        assert.equal(applied.length, rows[0]!.count, `round ${round}: each migration applied by exactly one process`);
        assert.deepEqual(await schemaProblems(fresh.pool), []);
        const names = (await fresh.pool.query<{ name: string }>("SELECT queue_name::text AS name FROM pgmq.meta ORDER BY 1")).rows;
        assert.deepEqual(
          names.map((row) => row.name),
          ["ev_mig_audit", "ev_mig_audit_dlq", "ev_mig_mail", "ev_mig_mail_dlq", "mig_a", "mig_a_dlq", "mig_b", "mig_b_dlq"],
        );
        const bindings = await fresh.pool.query("SELECT pattern, queue_name FROM pgmq.topic_bindings ORDER BY 2");
        assert.deepEqual(bindings.rows, [
          { pattern: "mig.#", queue_name: "ev_mig_audit" },
          { pattern: "mig.*.created", queue_name: "ev_mig_mail" },
        ]);
      } finally {
        await fresh.drop();
      }
    }
  });

  test("migrate, enqueue, subscribe and publish into the same new queues at once", async () => {
    for (let round = 0; round < 8; round += 1) {
      const queue = `boot_${round}`;
      const subscribers = [{ name: `boot_${round}`, pattern: `boot.r${round}.#` }];
      const [migrated, enqueued, subscribed, published] = await Promise.all([
        actors[0]!.send({ op: "migrate", calls: 2, queues: [queue], subscribers }),
        actors[1]!.send({ op: "enqueue", queue, calls: 5, tag: "boot" }),
        actors[2]!.send({ op: "subscribe", calls: 3, subscribers }),
        actors[3]!.send({ op: "publish", routingKey: `boot.r${round}.created`, calls: 5, tag: "boot" }),
      ]);
      assert.deepEqual([migrated!, enqueued!, subscribed!, published!].flatMap(errorsOf), [], `round ${round}`);
      assert.deepEqual((await messagesIn(queue)).map((row) => row.id).sort(), (okValues(enqueued!) as string[]).sort());
      // A publish that ran before the binding committed reached no queue; one after reached exactly one copy.
      const copies = (okValues(published!) as number[]).reduce((sum, count) => sum + count, 0);
      assert.equal((await messagesIn(`ev_boot_${round}`)).length, copies, `round ${round}: one copy per publish that saw the binding`);
    }
    assert.deepEqual(await schemaProblems(db.pool), []);
  });

  test("publish to subscribers being set up: every copy lands once, and the `*` listing never shows their queues", async (t) => {
    let listings = 0;
    for (let round = 0; round < 8; round += 1) {
      const subscribers = ["a", "b", "c"].map((name) => ({ name: `fan_${round}_${name}`, pattern: `fan.r${round}.#` }));
      const [listing, first, second, published] = await Promise.all([
        actors[0]!.send({ op: "discover", forMs: 300 }),
        actors[1]!.send({ op: "subscribe", calls: 2, subscribers }),
        actors[2]!.send({ op: "subscribe", calls: 2, subscribers: [...subscribers].reverse() }),
        actors[3]!.send({ op: "publish", routingKey: `fan.r${round}.created`, calls: 10, tag: "fan" }),
      ]);
      assert.deepEqual([first!, second!, published!].flatMap(errorsOf), [], `round ${round}`);
      const copies = (okValues(published!) as number[]).reduce((sum, count) => sum + count, 0);
      let stored = 0;
      for (const { name } of subscribers) stored += (await messagesIn(`ev_${name}`)).length;
      assert.equal(stored, copies, `round ${round}: the copies publish reported are the copies stored`);
      const { seen, listings: count } = okValues(listing!)[0] as { listings: number; seen: string[] };
      listings += count;
      assert.deepEqual(
        seen.filter((queue) => queue.startsWith("ev_") || queue.endsWith("_dlq")),
        [],
        `round ${round}: no subscriber queue or DLQ among the job queues`,
      );
    }
    t.diagnostic(`${listings} listings of the \`*\` worker's queues`);
    assert.deepEqual(await schemaProblems(db.pool), []);
  });
});

describe("dropping a queue while others enqueue into it", () => {
  test("an enqueue either succeeds or fails with QUEUE_NOT_FOUND; afterwards every process enqueues again", async (t) => {
    const queue = "dropped_often";
    await actors[0]!.send({ op: "createQueue", queue, calls: 1 });
    const [dropper, ...enqueuers] = await Promise.all([
      actors[0]!.send({ op: "drop", queue, calls: 1, times: 20 }),
      ...actors.slice(1).map((actor, a) => actor.send({ op: "enqueueLoop", queue, calls: 3, times: 20, tag: `d${a}` })),
    ]);
    assert.deepEqual(errorsOf(dropper!), []);
    const outcomes = enqueuers.flatMap((results) => (okValues(results) as CallResult[][]).flat());
    assert.equal(outcomes.length, 3 * 3 * 20);
    const unexpected = errorsOf(outcomes).filter((error) => !error.startsWith("QUEUE_NOT_FOUND: "));
    assert.deepEqual(unexpected, [], "no error but the documented one");
    t.diagnostic(`${String(okValues(dropper!)[0])} drops; ${errorsOf(outcomes).length} of ${outcomes.length} enqueues refused`);
    // Every message in the queue now is of an enqueue reported as done, and is there once;
    // the drops took the others with them. (Enqueue n of call c of actor a has key d<a>/<c * 20 + n>.)
    const done = new Set(
      enqueuers.flatMap((results, a) =>
        (okValues(results) as CallResult[][]).flatMap((calls, c) =>
          calls.flatMap((outcome, n) => (outcome.error ? [] : [`d${a}/${c * 20 + n}`])),
        ),
      ),
    );
    const stored = await messagesIn(queue).catch(() => []);
    assert.deepEqual(
      stored.filter((row) => !done.has(row.key)),
      [],
    );
    assert.equal(new Set(stored.map((row) => row.key)).size, stored.length, "no job is in the queue twice");
    assert.deepEqual(await schemaProblems(db.pool), []);
    // No process keeps a dropped queue in mind: each enqueues into it again.
    const after = await Promise.all(actors.map((actor) => actor.send({ op: "enqueue", queue, calls: 2, tag: "after" })));
    assert.deepEqual(after.flatMap(errorsOf), []);
    assert.deepEqual(await schemaProblems(db.pool), []);
  });
});

describe("queues other PGMQ clients make, and callers' isolation levels", () => {
  test("plain PGMQ clients calling pgmq.create while pgbus processes enqueue into the same new queue", async () => {
    for (let round = 0; round < 10; round += 1) {
      const queue = `shared_${round}`;
      const [plain, ...results] = await Promise.all([
        Promise.allSettled(Array.from({ length: 4 }, () => db.pool.query("SELECT pgmq.create($1)", [queue]))),
        ...actors.map((actor) => actor.send({ op: "enqueue", queue, calls: 3, tag: "shared" })),
      ]);
      assert.deepEqual(
        plain.filter((outcome) => outcome.status === "rejected"),
        [],
      );
      assert.deepEqual(results.flatMap(errorsOf), [], `round ${round}`);
      assert.equal((await messagesIn(queue)).length, 4 * 3);
    }
    assert.deepEqual(await schemaProblems(db.pool), []);
  });

  test("plain, unlogged and partitioned queues another client made are taken over as they are", async () => {
    await db.pool.query("SELECT pgmq.create('made_plain')");
    // The shapes the pgmq extension's create_unlogged and create_partitioned make, by hand.
    for (const [queue, unlogged, partitioned] of [
      ["made_unlogged", true, false],
      ["made_partitioned", false, true],
    ] as const) {
      const columns = `msg_id bigint GENERATED ALWAYS AS IDENTITY, read_ct integer NOT NULL DEFAULT 0,
        enqueued_at timestamptz NOT NULL DEFAULT now(), last_read_at timestamptz, vt timestamptz NOT NULL, message jsonb, headers jsonb`;
      await db.pool.query(
        `CREATE ${unlogged ? "UNLOGGED " : ""}TABLE pgmq.q_${queue} (${columns}${partitioned ? ") PARTITION BY RANGE (msg_id)" : ", PRIMARY KEY (msg_id))"}`,
      );
      if (partitioned) await db.pool.query(`CREATE TABLE pgmq.q_${queue}_p0 PARTITION OF pgmq.q_${queue} DEFAULT`);
      await db.pool.query(
        `CREATE ${unlogged ? "UNLOGGED " : ""}TABLE pgmq.a_${queue} (LIKE pgmq.q_${queue}, archived_at timestamptz NOT NULL DEFAULT now())`,
      );
      await db.pool.query("INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged) VALUES ($1, $2, $3)", [
        queue,
        partitioned,
        unlogged,
      ]);
    }
    // The check sees what pgbus has yet to add (which also shows that it can fail).
    assert.deepEqual(
      (await schemaProblems(db.pool)).filter((problem) => problem.includes("made_plain")),
      ["no DLQ for made_plain", "no insert trigger on q_made_plain"],
    );
    for (const queue of ["made_plain", "made_unlogged", "made_partitioned"]) {
      const results = await Promise.all(actors.map((actor) => actor.send({ op: "enqueue", queue, calls: 5, tag: "made" })));
      assert.deepEqual(results.flatMap(errorsOf), [], queue);
      assert.equal((await messagesIn(queue)).length, 20, queue);
    }
    const kinds = await db.pool.query<{ relname: string; relkind: string; relpersistence: string }>(
      "SELECT relname::text, relkind::text, relpersistence::text FROM pg_class WHERE relname IN ('q_made_unlogged', 'q_made_partitioned') ORDER BY 1",
    );
    assert.deepEqual(kinds.rows, [
      { relname: "q_made_partitioned", relkind: "p", relpersistence: "p" },
      { relname: "q_made_unlogged", relkind: "r", relpersistence: "u" },
    ]);
    assert.deepEqual(await schemaProblems(db.pool), []);
  });

  for (const isolation of ["REPEATABLE READ", "SERIALIZABLE"]) {
    test(`an enqueue in a ${isolation} transaction whose snapshot predates the queue's creation succeeds`, async () => {
      const queue = `snap_${isolation === "SERIALIZABLE" ? "ser" : "rr"}`;
      const client = await db.pool.connect();
      try {
        await client.query(`BEGIN ISOLATION LEVEL ${isolation}`);
        await client.query("SELECT count(*) FROM pgmq.meta"); // the snapshot is taken here
        assert.deepEqual(errorsOf(await actors[0]!.send({ op: "enqueue", queue, calls: 1, tag: "other" })), []);
        const bus = new Pgbus({ pool: db.pool });
        const job = defineJob({ name: `snap.${queue}`, queue, perform() {} });
        await bus.enqueue(job, { n: 1 }, { client });
        await client.query("COMMIT");
      } finally {
        client.release();
      }
      assert.equal((await messagesIn(queue)).length, 2);
      assert.deepEqual(await schemaProblems(db.pool), []);
    });
  }
});

describe("dropping a subscriber's queue while events are published", () => {
  test("publishes never fail, and the subscribers not dropped get every event", async () => {
    const kept = { name: "drop_kept", pattern: "dropping.#" };
    const churned = { name: "drop_churned", pattern: "dropping.#" };
    await actors[0]!.send({ op: "subscribe", calls: 1, subscribers: [kept, churned] });
    const [dropper, resubscriber, ...publishers] = await Promise.all([
      actors[0]!.send({ op: "drop", queue: `ev_${churned.name}`, calls: 1, times: 15 }),
      actors[1]!.send({ op: "subscribe", calls: 1, subscribers: [churned], times: 15 }),
      actors[2]!.send({ op: "publish", routingKey: "dropping.created", calls: 30, tag: "drop" }),
      actors[3]!.send({ op: "publish", routingKey: "dropping.updated", calls: 30, tag: "drop" }),
    ]);
    assert.deepEqual([dropper!, resubscriber!, ...publishers].flatMap(errorsOf), []);
    assert.equal((await messagesIn(`ev_${kept.name}`)).length, 60, "one copy of each of the 60 events for the subscriber never dropped");
    assert.deepEqual(await schemaProblems(db.pool), []);
  });
});

describe("a `*` worker while queues and subscribers are made around it", () => {
  test("it runs every job of the new queues once, and leaves subscriber queues and DLQs alone", async () => {
    const fresh = await createTestDatabase("races_star");
    const queues = Array.from({ length: 8 }, (_, round) => `star_${round}`);
    const runs = new Map<string, number>();
    const jobs = queues.map((queue) =>
      defineJob<{ tag: string; n: number }>({
        name: `race.${queue}`,
        queue,
        perform(payload) {
          const key = `${queue}/${payload.tag}/${payload.n}`;
          runs.set(key, (runs.get(key) ?? 0) + 1);
        },
      }),
    );
    const bus = new Pgbus({ connectionString: fresh.url, jobs });
    let pair: Actor[] = [];
    try {
      await bus.migrate();
      const worker = bus.worker({ queues: ["*"], capacity: 10, pollIntervalMs: 100 });
      await worker.start();
      pair = await startActors(2, fresh.url);
      let enqueuedCount = 0;
      let copies = 0;
      for (const [round, queue] of queues.entries()) {
        const subscribers = [{ name: `star_${round}`, pattern: `star.r${round}.#` }];
        const [enqueued, subscribed, published] = await Promise.all([
          pair[0]!.send({ op: "enqueue", queue, calls: 5, tag: "star" }),
          pair[1]!.send({ op: "subscribe", calls: 2, subscribers }),
          Promise.all(Array.from({ length: 5 }, (_, n) => bus.publish(`star.r${round}.created`, { n }))),
        ]);
        assert.deepEqual([enqueued!, subscribed!].flatMap(errorsOf), [], `round ${round}`);
        enqueuedCount += okValues(enqueued!).length;
        copies += published.reduce((sum, event) => sum + event.queues, 0);
      }
      await waitFor(() => runs.size === enqueuedCount, `${enqueuedCount} jobs run`);
      assert.deepEqual(
        [...runs].filter(([, count]) => count !== 1),
        [],
        "each job ran once",
      );
      await worker.stop();
      const names = (await fresh.pool.query<{ name: string }>("SELECT queue_name::text AS name FROM pgmq.meta")).rows.map(
        (row) => row.name,
      );
      const dead: string[] = [];
      let kept = 0;
      for (const name of names) {
        const count = (await messagesIn(name, fresh.pool)).length;
        if (name.endsWith("_dlq") && count > 0) dead.push(`${name}: ${count}`);
        else if (name.startsWith("ev_") && !name.endsWith("_dlq")) kept += count;
      }
      assert.deepEqual(dead, [], "nothing was dead-lettered");
      assert.equal(kept, copies, "every event copy is still in its subscriber's queue, untouched by the `*` worker");
      assert.deepEqual(await schemaProblems(fresh.pool), []);
    } finally {
      await bus.close();
      await Promise.all(pair.map((actor) => actor.stop()));
      await fresh.drop();
    }
  });
});

describe("inspecting queues while they are dropped", () => {
  test("the queue overview (pgbus status, pgbus queues) leaves out a queue dropped mid-listing instead of failing", async () => {
    const queue = "inspected";
    await actors[0]!.send({ op: "createQueue", queue, calls: 1 });
    let done = false;
    const churn = Promise.all([
      actors[0]!.send({ op: "drop", queue, calls: 1, times: 20 }),
      actors[1]!.send({ op: "enqueueLoop", queue, calls: 2, times: 20, tag: "inspected" }),
    ]).finally(() => (done = true));
    let overviews = 0;
    while (!done) {
      await queueOverview(db.pool);
      overviews += 1;
    }
    const [dropper, enqueuer] = await churn;
    assert.deepEqual(errorsOf(dropper!), []);
    assert.deepEqual(
      errorsOf((okValues(enqueuer!) as CallResult[][]).flat()).filter((error) => !error.startsWith("QUEUE_NOT_FOUND: ")),
      [],
    );
    assert.ok(overviews > 0);
  });
});
