import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { after, before, beforeEach, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Pgbus } from "../../src/bus.ts";
import type { Consumer } from "../../src/events/consumer.ts";
import { toEventMessage } from "../../src/events/event.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { TABLES, audit, billing, closeFixturePool, shipping } from "../fixtures/events/subscribers.ts";
import { setEnv } from "../helpers/env.ts";

const SUBSCRIBERS_MODULE = fileURLToPath(new URL("../fixtures/events/subscribers.ts", import.meta.url));
const CHILD = fileURLToPath(new URL("../fixtures/events/consumer-child.ts", import.meta.url));

let db: TestDatabase;
let restoreEnv = () => {};
let bus: Pgbus;

before(async () => {
  db = await createTestDatabase("ev_idem");
  restoreEnv = setEnv("PGBUS_TEST_DB_URL", db.url);
  bus = new Pgbus({ connectionString: db.url, jobs: [billing, shipping, audit] });
  await bus.migrate(); // queues ev_billing, ev_shipping, ev_audit and their bindings
  await db.pool.query(TABLES);
});
after(async () => {
  await bus.close();
  await closeFixturePool();
  restoreEnv();
  await db.drop();
});
beforeEach(async () => {
  await db.pool.query("TRUNCATE event_attempts, event_effects, pgbus.processed_events");
  for (const queue of ["ev_billing", "ev_shipping", "ev_audit"]) await bus.queues.purgeQueue(queue);
});

const count = async (text: string, values: unknown[] = []) => Number((await db.pool.query(text, values)).rows[0].n);

async function until(predicate: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((done) => (resolve = done));
  return { promise, resolve };
}

function spawnConsumer(): ChildProcess {
  const child = spawn(process.execPath, ["--import", "tsx", CHILD, db.url, SUBSCRIBERS_MODULE], { stdio: ["ignore", "pipe", "inherit"] });
  return child;
}

async function waitForReady(child: ChildProcess): Promise<void> {
  let output = "";
  for await (const chunk of child.stdout!) {
    output += String(chunk);
    if (output.includes("ready")) return;
  }
  throw new Error(`consumer child exited before it was ready: ${output}`);
}

describe("idempotent subscribers", () => {
  test("3 subscribers x 1,000 events: each handler's effect happens exactly once although a consumer is SIGKILLed mid-run", async (t) => {
    const events = 1_000;
    const published: string[] = [];
    for (let start = 0; start < events; start += 50) {
      const batch = await Promise.all(Array.from({ length: 50 }, (_, i) => bus.publish("orders.created", { n: start + i })));
      for (const event of batch) {
        assert.equal(event.queues, 3);
        published.push(event.eventId);
      }
    }

    const child = spawnConsumer();
    const exited = once(child, "exit");
    t.after(() => void child.kill("SIGKILL")); // a test that fails before the kill leaks no consumer
    await waitForReady(child);
    await until(async () => (await count("SELECT count(*) AS n FROM event_effects")) >= 600);
    child.kill("SIGKILL");
    await exited;
    const effectsAtKill = await count("SELECT count(*) AS n FROM event_effects");
    assert.ok(effectsAtKill < 3 * events, `the kill came mid-run (${effectsAtKill} of ${3 * events} effects done)`);

    // A second consumer finishes the run; the killed one's claimed copies return after their VT (2 s).
    const consumer: Consumer = bus.consumer({ jobsModule: SUBSCRIBERS_MODULE, capacity: 10, visibilityTimeoutSec: 2, pollIntervalMs: 100 });
    await consumer.start();
    try {
      await until(async () => (await count("SELECT count(*) AS n FROM event_effects")) === 3 * events);
      await until(async () => (await count("SELECT count(*) AS n FROM pgbus.processed_events")) === 3 * events);
      for (const queue of ["ev_billing", "ev_shipping", "ev_audit"]) {
        await until(async () => (await bus.queues.metrics(queue)).queueLength === 0);
        assert.equal((await bus.queues.metrics(`${queue}_dlq`)).queueLength, 0, `${queue}_dlq is empty`);
      }
    } finally {
      await consumer.stop();
    }

    const perSubscriber = await db.pool.query(
      "SELECT subscriber, count(*)::int AS events, max(runs) AS max_runs, count(DISTINCT event_id)::int AS distinct_events FROM event_effects GROUP BY subscriber ORDER BY subscriber",
    );
    assert.deepEqual(perSubscriber.rows, [
      { subscriber: "audit", events, max_runs: 1, distinct_events: events },
      { subscriber: "billing", events, max_runs: 1, distinct_events: events },
      { subscriber: "shipping", events, max_runs: 1, distinct_events: events },
    ]);
    assert.equal(await count("SELECT count(*) AS n FROM event_effects WHERE NOT (event_id = ANY($1::uuid[]))", [published]), 0);
    const attempts = await count("SELECT count(*) AS n FROM event_attempts");
    const fromChild = await count("SELECT count(DISTINCT (subscriber, event_id)) AS n FROM event_attempts WHERE pid <> $1", [process.pid]);
    // Runs started by the killed child whose effect had not committed are run again here,
    // and their second run finds the effect either absent (runs it) or present (skips it).
    const redelivered = await count(
      "SELECT (SELECT count(*) FROM pgmq.a_ev_billing WHERE read_ct > 1) + (SELECT count(*) FROM pgmq.a_ev_shipping WHERE read_ct > 1) + (SELECT count(*) FROM pgmq.a_ev_audit WHERE read_ct > 1) AS n",
    );
    const rerun = await count(
      "SELECT count(*) AS n FROM (SELECT 1 FROM event_attempts GROUP BY subscriber, event_id HAVING count(*) > 1) r",
    );
    t.diagnostic(
      `killed after ${effectsAtKill} effects; ${attempts} handler runs for ${3 * events} effects (${attempts - 3 * events} reruns); ` +
        `${redelivered} copies redelivered after the kill; the child started ${fromChild} runs`,
    );
    assert.ok(fromChild >= effectsAtKill, "the child ran (at least) every effect done before the kill");
    // The child held claimed copies when it died (it claims up to capacity + prefetch while a
    // backlog lasts): they came back after their VT and were read a second time.
    assert.ok(redelivered > 0, "copies the killed child held were redelivered");
    assert.ok(attempts >= 3 * events + rerun, "every rerun is an extra handler run");
    // A copy run twice was one the child held: a live consumer never reran a copy.
    assert.ok(rerun <= redelivered, `${rerun} (subscriber, event) pairs run twice, ${redelivered} copies redelivered`);
    assert.equal(
      await count(
        "SELECT count(*) AS n FROM pgbus.processed_events p LEFT JOIN event_effects e USING (subscriber, event_id) WHERE e.event_id IS NULL",
      ),
      0,
      "an event is marked handled only together with its effect",
    );
  });

  test("a redelivered copy of an event the subscriber already handled is skipped (not run) and acked", async () => {
    const event = await bus.publish("orders.paid", { n: 1 });
    const consumer = bus.consumer({ subscribers: ["billing"], capacity: 2, pollIntervalMs: 50 });
    await consumer.start();
    try {
      await until(async () => (await count("SELECT count(*) AS n FROM pgbus.processed_events WHERE subscriber = 'billing'")) === 1);
      const ran = await count("SELECT count(*) AS n FROM event_attempts WHERE subscriber = 'billing'");
      assert.equal(ran, 1);
      // The same event, delivered again (a producer retry, a PGMQ client in another language, ...).
      const duplicate = await bus.queues.send("ev_billing", toEventMessage({ ...event }));
      await until(async () => (await db.pool.query("SELECT 1 FROM pgmq.a_ev_billing WHERE msg_id = $1", [duplicate])).rows.length === 1);
      assert.equal(
        await count("SELECT count(*) AS n FROM event_attempts WHERE subscriber = 'billing'"),
        1,
        "the handler did not run again",
      );
      assert.equal((await bus.queues.metrics("ev_billing")).queueLength, 0);
      // A different event still runs.
      await bus.publish("orders.paid", { n: 2 });
      await until(async () => (await count("SELECT count(*) AS n FROM event_attempts WHERE subscriber = 'billing'")) === 2);
    } finally {
      await consumer.stop();
    }
  });

  test("the ack archives the copy and records the event in one statement; nothing is recorded before success", async () => {
    const started = deferred();
    const release = deferred();
    const slow = bus.subscribe(
      "slow.#",
      async () => {
        started.resolve();
        await release.promise;
      },
      { name: "slow", idempotent: true },
    );
    const consumer = bus.consumer({ subscribers: [slow], capacity: 1, pollIntervalMs: 50 });
    await consumer.start();
    try {
      const event = await bus.publish("slow.thing", {});
      await started.promise;
      assert.equal(
        await count("SELECT count(*) AS n FROM pgbus.processed_events WHERE subscriber = 'slow'"),
        0,
        "not marked while running",
      );
      release.resolve();
      await until(async () => (await count("SELECT count(*) AS n FROM pgmq.a_ev_slow")) === 1);
      assert.equal(
        await count("SELECT count(*) AS n FROM pgbus.processed_events WHERE subscriber = 'slow' AND event_id = $1", [event.eventId]),
        1,
      );
    } finally {
      await consumer.stop();
    }
  });
});

describe("markHandled inside the handler's transaction", () => {
  test("rolled back with the handler's transaction: the event is not marked, and the retry marks it and commits its effect", async () => {
    const marks: boolean[] = [];
    const subscriber = bus.subscribe(
      "rollback.#",
      async (event, ctx) => {
        const client = await db.pool.connect();
        try {
          await client.query("BEGIN");
          marks.push(await ctx.markHandled(client));
          await client.query("INSERT INTO event_effects (subscriber, event_id) VALUES ($1, $2)", [ctx.subscriber, event.eventId]);
          if (ctx.attempt === 1) {
            await client.query("ROLLBACK");
            throw new Error("the effect failed; its transaction rolled back");
          }
          await client.query("COMMIT");
        } finally {
          client.release();
        }
      },
      { name: "rollbacker", idempotent: true, maxRetries: 2, backoff: { baseMs: 10, maxMs: 10, jitter: 0 } },
    );
    const consumer = bus.consumer({ subscribers: [subscriber], capacity: 1, pollIntervalMs: 50 });
    await consumer.start();
    try {
      const event = await bus.publish("rollback.now", {});
      await until(async () => (await count("SELECT count(*) AS n FROM pgmq.a_ev_rollbacker")) === 1);
      assert.deepEqual(marks, [true, true], "the rolled-back mark did not count: the retry could mark it again");
      assert.equal(
        await count("SELECT count(*) AS n FROM event_effects WHERE subscriber = 'rollbacker' AND event_id = $1", [event.eventId]),
        1,
      );
      assert.equal(
        await count("SELECT count(*) AS n FROM pgbus.processed_events WHERE subscriber = 'rollbacker' AND event_id = $1", [event.eventId]),
        1,
      );
      assert.equal((await bus.queues.metrics("ev_rollbacker_dlq")).queueLength, 0);
    } finally {
      await consumer.stop();
    }
  });
});

describe("threads mode", () => {
  test("subscribers exported by the jobs module run in worker threads, each copy to its own handler", async () => {
    for (let i = 0; i < 20; i++) await bus.publish("orders.shipped", { n: i });
    const consumer = bus.consumer({
      jobsModule: SUBSCRIBERS_MODULE,
      executionMode: "threads",
      threads: 2,
      capacity: 4,
      pollIntervalMs: 50,
    });
    await consumer.start();
    try {
      await until(async () => (await count("SELECT count(*) AS n FROM event_effects")) === 60);
      assert.equal(consumer.stats()?.executionMode, "threads");
      assert.deepEqual(consumer.subscribers.map((s) => s.name).sort(), ["audit", "billing", "shipping"]);
      assert.equal(await count("SELECT count(*) AS n FROM event_effects WHERE runs > 1"), 0);
    } finally {
      await consumer.stop();
    }
  });
});

describe("isolation between subscribers", () => {
  test("a failing subscriber's copies go to its DLQ after its retries; the others handle every event", async () => {
    const handled = new Map<string, number>();
    const ok = (name: string) => () => void handled.set(name, (handled.get(name) ?? 0) + 1);
    let failures = 0;
    const subscribers = [
      bus.subscribe("invoices.*", ok("ledger"), { name: "ledger", idempotent: true }),
      bus.subscribe("invoices.#", ok("mailer"), { name: "mailer" }),
      bus.subscribe(
        "invoices.*",
        () => {
          failures++;
          throw new Error("the broken subscriber fails every time");
        },
        { name: "broken", maxRetries: 2, backoff: { baseMs: 10, maxMs: 20, jitter: 0 } },
      ),
    ];
    const consumer = bus.consumer({ subscribers, capacity: 10, pollIntervalMs: 50 });
    await consumer.start();
    try {
      for (let i = 0; i < 30; i++) await bus.publish("invoices.issued", { i });
      await until(async () => (await bus.queues.metrics("ev_broken_dlq")).queueLength === 30);
      await until(async () => handled.get("ledger") === 30 && handled.get("mailer") === 30);
      assert.equal(failures, 30 * 3, "first run + 2 retries each");
      const dead = await db.pool.query(
        "SELECT message->>'routing_key' AS key, headers->'pgbus_error'->>'message' AS error FROM pgmq.q_ev_broken_dlq LIMIT 1",
      );
      assert.deepEqual(dead.rows[0], { key: "invoices.issued", error: "the broken subscriber fails every time" });
      assert.equal((await bus.queues.metrics("ev_ledger_dlq")).queueLength, 0);
      assert.equal((await bus.queues.metrics("ev_mailer_dlq")).queueLength, 0);
    } finally {
      await consumer.stop();
    }
  });

  test("a message in a subscriber's queue that is not an event goes to its DLQ as invalid_message", async () => {
    const seen: unknown[] = [];
    const picky = bus.subscribe("picky.*", (event) => void seen.push(event.payload), { name: "picky" });
    const consumer = bus.consumer({ subscribers: [picky], capacity: 2, pollIntervalMs: 50 });
    await consumer.start();
    try {
      await bus.queues.send("ev_picky", { job: "not_an_event", payload: {} });
      await bus.publish("picky.ok", { fine: true });
      await until(async () => (await bus.queues.metrics("ev_picky_dlq")).queueLength === 1 && seen.length === 1);
      const dead = await db.pool.query("SELECT headers->'pgbus_error'->>'reason' AS reason FROM pgmq.q_ev_picky_dlq");
      assert.equal(dead.rows[0].reason, "invalid_message");
      assert.deepEqual(seen, [{ fine: true }]);
    } finally {
      await consumer.stop();
    }
  });
});
