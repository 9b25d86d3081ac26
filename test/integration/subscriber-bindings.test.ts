import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { ValidationError } from "../../src/errors.ts";
import type { Event } from "../../src/events/event.ts";
import { defineSubscriber } from "../../src/events/subscriber.ts";
import type { Logger } from "../../src/logger.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";

/**
 * Bindings follow the code: a subscriber whose pattern changed loses its old binding at
 * setup (migrate or consumer start), in one transaction; a removed subscriber is unbound
 * with bus.unsubscribe, its queue kept unless asked.
 */

let db: TestDatabase;
const buses: Pgbus[] = [];

before(async () => {
  db = await createTestDatabase("sub_bindings");
  await newBus().migrate();
});
after(async () => {
  try {
    await Promise.all(buses.map((bus) => bus.close()));
  } finally {
    await db.drop();
  }
});

/** A bus as a fresh deploy of the application would make it: its own subscribers only. */
function newBus(options: { logger?: Logger } = {}): Pgbus {
  const bus = new Pgbus({ connectionString: db.url, ...options });
  buses.push(bus);
  return bus;
}

async function bindings(queue: string): Promise<string[]> {
  const { rows } = await db.pool.query("SELECT pattern FROM pgmq.topic_bindings WHERE queue_name = $1 ORDER BY pattern", [queue]);
  return rows.map((row: { pattern: string }) => row.pattern);
}
const queued = async (queue: string) => Number((await db.pool.query(`SELECT count(*) AS n FROM pgmq.q_${queue}`)).rows[0].n);
const noop = async () => {};

describe("a subscriber's changed pattern", () => {
  test("narrowed from orders.* to orders.created at migrate(): the old binding goes, orders.cancelled no longer arrives", async () => {
    const before = newBus();
    before.subscribe("orders.*", noop, { name: "narrow" });
    before.subscribe("orders.#", noop, { name: "bystander" });
    await before.migrate();
    assert.deepEqual(await bindings("ev_narrow"), ["orders.*"]);
    assert.equal((await before.publish("orders.cancelled", { id: 1 })).queues, 2);

    const logged: object[] = [];
    const logger = {
      debug: noop,
      warn: noop,
      error: noop,
      info: (obj: object, msg?: string) => void (msg?.startsWith("subscriber pattern changed") && logged.push(obj)),
    } as unknown as Logger;
    const after = newBus({ logger });
    after.subscribe("orders.created", noop, { name: "narrow" });
    after.subscribe("orders.#", noop, { name: "bystander" });
    await after.migrate();

    assert.deepEqual(await bindings("ev_narrow"), ["orders.created"]);
    assert.deepEqual(await bindings("ev_bystander"), ["orders.#"], "other subscribers keep theirs");
    assert.deepEqual(logged, [{ subscriber: "narrow", queue: "ev_narrow", pattern: "orders.*" }], "the removal is logged");

    assert.equal((await after.publish("orders.cancelled", { id: 2 })).queues, 1, "only the bystander gets orders.cancelled");
    assert.equal(await queued("ev_narrow"), 1, "the copy sent before the change stays; no new one");
    assert.equal((await after.publish("orders.created", { id: 3 })).queues, 2);
    assert.equal(await queued("ev_narrow"), 2);

    await after.migrate();
    assert.deepEqual(await bindings("ev_narrow"), ["orders.created"], "a second setup changes nothing");
  });

  test("a consumer's start reconciles too, and its handler gets only what the new pattern matches", async () => {
    const old = newBus();
    old.subscribe("payments.#", noop, { name: "widen" });
    await old.migrate();

    const logged: object[] = [];
    const bus = newBus({
      logger: {
        debug: noop,
        warn: noop,
        error: noop,
        info: (obj: object, msg?: string) => void (msg?.startsWith("subscriber pattern changed") && logged.push(obj)),
      } as unknown as Logger,
    });
    const seen: string[] = [];
    bus.subscribe("payments.refunded", async (event: Event) => void seen.push(event.routingKey), { name: "widen" });
    const consumer = bus.consumer({ pollIntervalMs: 50 });
    await consumer.start();
    try {
      assert.deepEqual(await bindings("ev_widen"), ["payments.refunded"]);
      assert.deepEqual(logged, [{ subscriber: "widen", queue: "ev_widen", pattern: "payments.#" }], "the consumer logs the removal");
      await bus.publish("payments.captured", {});
      await bus.publish("payments.refunded", {});
      await waitFor(() => seen.length === 1, "the refund handled");
      // The refund's ack goes out in the next batch: wait for it, then the queue must be
      // empty, with nothing else handled (a captured copy would be in one or the other).
      await waitFor(async () => (await queued("ev_widen")) === 0, "the refund's ack");
      assert.deepEqual(seen, ["payments.refunded"], "payments.captured never reached the queue");
    } finally {
      await consumer.stop();
    }
  });

  test("many processes setting up at once end with exactly the new binding", async () => {
    const first = newBus();
    first.subscribe("stock.#", noop, { name: "racer" });
    await first.migrate();
    const racers = Array.from({ length: 8 }, () => {
      const bus = newBus();
      bus.subscribe("stock.low", noop, { name: "racer" });
      return bus;
    });
    await Promise.all(racers.map((bus) => bus.migrate()));
    assert.deepEqual(await bindings("ev_racer"), ["stock.low"]);
  });
});

describe("bus.unsubscribe for a removed subscriber", () => {
  test("unbinds its queue so publishes stop filling it; the queue and its copies stay; dropQueue drops it", async () => {
    const old = newBus();
    old.subscribe("users.#", noop, { name: "retired" });
    old.subscribe("users.#", noop, { name: "keeper" });
    await old.migrate();
    assert.equal((await old.publish("users.created", { id: 1 })).queues, 2);

    const bus = newBus(); // the next deploy, without "retired"
    bus.subscribe("users.#", noop, { name: "keeper" });
    await bus.migrate();
    assert.deepEqual(await bus.unsubscribe("retired"), { queue: "ev_retired", unbound: ["users.#"], droppedQueue: false });
    assert.equal((await bus.publish("users.created", { id: 2 })).queues, 1, "only keeper");
    assert.equal(await queued("ev_retired"), 1, "the copy already there is kept");
    assert.ok(await bus.queues.queueExists("ev_retired"));
    assert.deepEqual(await bindings("ev_keeper"), ["users.#"]);

    assert.deepEqual(await bus.unsubscribe("retired"), { queue: "ev_retired", unbound: [], droppedQueue: false }, "idempotent");
    assert.deepEqual(await bus.unsubscribe("retired", { dropQueue: true }), { queue: "ev_retired", unbound: [], droppedQueue: true });
    assert.equal(await bus.queues.queueExists("ev_retired"), false);
    assert.equal(await bus.queues.queueExists("ev_retired_dlq"), false, "its DLQ goes with it");
  });

  test("a subscriber with its own queue name is unsubscribed by naming the queue", async () => {
    const old = newBus();
    old.subscribe("invoices.*", noop, { name: "billing", queue: "billing_events" });
    await old.migrate();
    const result = await newBus().unsubscribe("billing", { queue: "billing_events", dropQueue: true });
    assert.deepEqual(result, { queue: "billing_events", unbound: ["invoices.*"], droppedQueue: true });
    assert.deepEqual(await bindings("billing_events"), []);
  });

  test("refused with a ValidationError while the subscriber is registered, or for a bad name or option", async () => {
    const bus = newBus();
    bus.subscribe("users.#", noop, { name: "still_here" });
    await bus.migrate();
    await assert.rejects(
      bus.unsubscribe("still_here"),
      (error: unknown) => error instanceof ValidationError && /still registered with this bus \(pattern users\.#\)/.test(error.message),
    );
    assert.deepEqual(await bindings("ev_still_here"), ["users.#"], "nothing changed");
    await assert.rejects(
      bus.unsubscribe("Bad Name"),
      (error: unknown) => error instanceof ValidationError && /invalid subscriber name/.test(error.message),
    );
    await assert.rejects(bus.unsubscribe("x", { queue: "no/such" }), (error: unknown) => error instanceof ValidationError);
    await assert.rejects(
      bus.unsubscribe("x", { dropQueue: "yes" as unknown as boolean }),
      (error: unknown) => error instanceof ValidationError && /dropQueue must be a boolean/.test(error.message),
    );
  });

  test("a subscriber moved to another queue: its old queue can be unsubscribed by naming it, while it is registered", async () => {
    const old = newBus();
    old.subscribe("ship.#", noop, { name: "mover" });
    await old.migrate();
    const bus = newBus();
    bus.subscribe("ship.#", noop, { name: "mover", queue: "mover_v2" });
    await bus.migrate();
    assert.equal((await bus.publish("ship.sent", {})).queues, 2, "both queues bound until the old one is removed");
    await assert.rejects(bus.unsubscribe("mover", { queue: "mover_v2" }), ValidationError);
    assert.deepEqual(await bus.unsubscribe("mover", { queue: "ev_mover", dropQueue: true }), {
      queue: "ev_mover",
      unbound: ["ship.#"],
      droppedQueue: true,
    });
    assert.equal((await bus.publish("ship.sent", {})).queues, 1);
    assert.deepEqual(await bindings("mover_v2"), ["ship.#"]);
  });

  test("a defineSubscriber definition removed from the jobs list is unsubscribed the same way", async () => {
    const audit = defineSubscriber({ name: "audit_old", pattern: "audit.#", handle: noop });
    const old = new Pgbus({ connectionString: db.url, jobs: [audit] });
    buses.push(old);
    await old.migrate();
    assert.deepEqual(await bindings("ev_audit_old"), ["audit.#"]);
    assert.deepEqual((await newBus().unsubscribe("audit_old")).unbound, ["audit.#"]);
    assert.equal((await old.publish("audit.x", {})).queues, 0);
  });
});
