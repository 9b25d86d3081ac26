import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { ValidationError } from "../../src/errors.ts";
import type { Event } from "../../src/events/event.ts";
import { publishEvent } from "../../src/events/publish.ts";
import { compileTopicPattern, topicMatches, validateRoutingKey, validateTopicPattern } from "../../src/events/routing.ts";
import { defineSubscriber } from "../../src/events/subscriber.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

let db: TestDatabase;
let bus: Pgbus;

before(async () => {
  db = await createTestDatabase("ev_routing");
  bus = new Pgbus({ connectionString: db.url });
  await bus.migrate();
});
after(async () => {
  await bus.close();
  await db.drop();
});

/** Resolves when `predicate` holds, checking every 20 ms. */
async function until(predicate: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const isInvalidKey = (pattern: RegExp) => (error: unknown) =>
  error instanceof ValidationError && error.code === "INVALID_ROUTING_KEY" && pattern.test(error.message);

describe("routing keys and patterns are validated before any SQL", () => {
  const badKeys = ["", ".", "a.", ".a", "a..b", "a b", "a.*", "a.#", "orders/created", "é", "a.b\n", "a".repeat(256), 42, null, undefined];
  const badPatterns = ["", ".", "a.", "a..b", "a.*x", "a#", "**", "a b", "orders/created", "a".repeat(256), 7, null];

  test("bad routing keys throw ValidationError INVALID_ROUTING_KEY naming the key and the rule", () => {
    for (const key of badKeys) {
      assert.throws(() => validateRoutingKey(key), isInvalidKey(/invalid routing key .*dot-separated segments/), `key ${String(key)}`);
    }
    assert.throws(() => validateRoutingKey("a b"), isInvalidKey(/"a b"/));
    for (const key of ["a", "a.b", "Orders.created-v2", "x_1.y-2.Z", "a".repeat(255)]) assert.equal(validateRoutingKey(key), key);
  });

  test("bad patterns throw ValidationError INVALID_ROUTING_KEY naming the pattern and the rule", () => {
    for (const pattern of badPatterns) {
      assert.throws(() => validateTopicPattern(pattern), isInvalidKey(/invalid topic pattern .*wildcards/), `pattern ${String(pattern)}`);
    }
    for (const pattern of ["#", "*", "a.*", "a.#", "#.a", "a.*.c", "*.*", "a.#.c"]) assert.equal(validateTopicPattern(pattern), pattern);
  });

  test("publish with a bad key sends no SQL; subscribe and defineSubscriber reject bad patterns and names", async () => {
    const calls: string[] = [];
    const spy = { query: async (text: string) => (calls.push(text), { rows: [] }) };
    await assert.rejects(publishEvent({ db: spy, prepared: false }, "orders..created", {}), isInvalidKey(/"orders\.\.created"/));
    await assert.rejects(bus.publish("a.*", {}), isInvalidKey(/routing key "a\.\*"/));
    assert.deepEqual(calls, []);
    assert.throws(() => bus.subscribe("a..b", () => {}, { name: "x" }), isInvalidKey(/topic pattern "a\.\.b"/));
    assert.throws(
      () => defineSubscriber({ name: "Bad-Name", pattern: "a", handle() {} }),
      (e: unknown) => e instanceof ValidationError && e.code === "INVALID_OPTION",
    );
    assert.throws(
      () => defineSubscriber({ name: "ok", pattern: "a", queue: "Bad Queue", handle() {} }),
      (e: unknown) => e instanceof ValidationError && e.code === "INVALID_QUEUE_NAME",
    );
    await assert.rejects(
      bus.publish("a", {}, { delayMs: -1 }),
      (e: unknown) => e instanceof ValidationError && e.code === "INVALID_OPTION",
    );
  });

  const patterns = ["#", "*", "a", "a.*", "a.#", "#.c", "a.*.c", "a.#.c", "*.b.#", "#.#", "a.b", "*.*", "#.b.#", "A-b_c.*"];
  const keys = ["a", "b", "a.b", "a.c", "a.b.c", "a.x.y.c", "b.c", "c", "a.b.c.d", "x.b.y", "A-b_c.d", "ab"];

  test("the TypeScript matcher agrees with the bindings' compiled_regex (PGMQ's compilation) on every pattern x key", async () => {
    // Through bindings, not a helper function, so the same test holds with the pgmq extension.
    await bus.queues.createQueue("rt_probe");
    try {
      for (const pattern of patterns) await db.pool.query("SELECT pgmq.bind_topic($1, 'rt_probe')", [pattern]);
      const { rows } = await db.pool.query<{ pattern: string; key: string; matched: boolean; regex: string }>(
        `SELECT b.pattern, k AS key, k ~ b.compiled_regex AS matched, b.compiled_regex AS regex
           FROM pgmq.topic_bindings b, unnest($1::text[]) k WHERE b.queue_name = 'rt_probe'`,
        [keys],
      );
      assert.equal(rows.length, patterns.length * keys.length);
      for (const row of rows) {
        assert.equal(compileTopicPattern(row.pattern), row.regex, row.pattern);
        assert.equal(topicMatches(row.pattern, row.key), row.matched, `${row.pattern} vs ${row.key}`);
      }
      // what pgmq.test_routing (and so send_topic) reaches
      for (const key of keys) {
        const routed = await db.pool.query<{ pattern: string }>("SELECT pattern FROM pgmq.test_routing($1)", [key]);
        assert.deepEqual(
          routed.rows.map((row) => row.pattern).sort(),
          patterns.filter((pattern) => topicMatches(pattern, key)).sort(),
          `test_routing(${key})`,
        );
      }
    } finally {
      await bus.queues.dropQueue("rt_probe");
    }
  });

  test("# as PGMQ has it (its topic_tests): replaced in place by any characters, so it needs the dots around it", () => {
    const cases: Array<[string, string, boolean]> = [
      ["logs.#", "logs.error", true],
      ["logs.#", "logs.api.error.fatal", true],
      ["logs.#", "logs", false],
      ["#.error", "app.error", true],
      ["#.error", "x.y.error", true],
      ["#.error", "error", false],
      ["a.#.c", "a.b.c", true],
      ["a.#.c", "a.x.y.c", true],
      ["a.#.c", "a.c", false],
      ["#", "anything.at.all", true],
      ["*.error", "app.error", true],
      ["*.error", "app.db.error", false],
    ];
    for (const [pattern, key, expected] of cases) assert.equal(topicMatches(pattern, key), expected, `${pattern} vs ${key}`);
  });
});

describe("routing table: each subscriber gets exactly the keys its pattern matches", () => {
  test("a.b, a, a.b.c, a.x.c, b.c against a.*, a.#, #, a.*.c", async () => {
    const seen = new Map<string, string[]>();
    const record = (name: string) => (event: Event) => {
      seen.set(name, [...(seen.get(name) ?? []), event.routingKey]);
    };
    const patterns = { star: "a.*", hash: "a.#", all: "#", middle: "a.*.c" } as const;
    const subscribers = Object.entries(patterns).map(([name, pattern]) => bus.subscribe(pattern, record(name), { name }));
    await bus.migrate(); // creates each subscriber's queue and binding
    const bindings = await db.pool.query("SELECT pattern, queue_name FROM pgmq.topic_bindings ORDER BY queue_name");
    assert.deepEqual(bindings.rows, [
      { pattern: "#", queue_name: "ev_all" },
      { pattern: "a.#", queue_name: "ev_hash" },
      { pattern: "a.*.c", queue_name: "ev_middle" },
      { pattern: "a.*", queue_name: "ev_star" },
    ]);

    const keys = ["a.b", "a", "a.b.c", "a.x.c", "b.c"];
    const fanout: Record<string, number> = {};
    for (const key of keys) fanout[key] = (await bus.publish(key, { key })).queues;
    // `a.#` does not match `a` (PGMQ compiles it to ^a\..*$), so `a` reaches only `#`.
    assert.deepEqual(fanout, { "a.b": 3, a: 1, "a.b.c": 3, "a.x.c": 3, "b.c": 1 });

    const consumer = bus.consumer({ subscribers, capacity: 5, pollIntervalMs: 50 });
    await consumer.start();
    try {
      await until(() => [...seen.values()].reduce((sum, list) => sum + list.length, 0) === 11);
      const sorted = (name: string) => [...(seen.get(name) ?? [])].sort();
      assert.deepEqual(sorted("star"), ["a.b"]);
      assert.deepEqual(sorted("hash"), ["a.b", "a.b.c", "a.x.c"]);
      assert.deepEqual(sorted("all"), ["a", "a.b", "a.b.c", "a.x.c", "b.c"]);
      assert.deepEqual(sorted("middle"), ["a.b.c", "a.x.c"]);
    } finally {
      await consumer.stop();
    }
  });
});

describe("consumer configuration errors are typed and name the problem", () => {
  test("no subscribers, unknown names, shared queues; stop is safe before start and twice", async () => {
    const lonely = new Pgbus({ connectionString: db.url });
    try {
      await assert.rejects(
        lonely.consumer().start(),
        (e: unknown) => e instanceof ValidationError && /consumer has no subscribers/.test(e.message),
      );
      await assert.rejects(
        bus.consumer({ subscribers: ["nope"] }).start(),
        (e: unknown) => e instanceof ValidationError && /no subscriber named "nope"; known subscribers: .*star/.test(e.message),
      );
      const one = defineSubscriber({ name: "one", pattern: "x", queue: "shared_q", handle() {} });
      const two = defineSubscriber({ name: "two", pattern: "y", queue: "shared_q", handle() {} });
      await assert.rejects(
        lonely.consumer({ subscribers: [one, two] }).start(),
        (e: unknown) => e instanceof ValidationError && /share queue shared_q/.test(e.message),
      );
      bus.subscribe("z", () => {}, { name: "zed" });
      assert.throws(
        () => bus.subscribe("z.*", () => {}, { name: "zed" }),
        (e: unknown) => e instanceof ValidationError && e.code === "DUPLICATE_JOB",
      );
      const idle = bus.consumer({ subscribers: ["zed"] });
      await idle.stop();
      await idle.stop();
      await idle.start(); // stays stopped
      assert.equal(idle.stats(), null);
    } finally {
      await lonely.close();
    }
  });
});

describe("subscriber queues and wildcard workers", () => {
  test("a subscriber's queue never appears among the job queues before its binding does", async () => {
    const { ensureSubscriptions } = await import("../../src/events/consumer-store.ts");
    const subscribers = Array.from({ length: 15 }, (_, n) => defineSubscriber({ name: `race_${n}`, pattern: `race.${n}`, handle() {} }));
    const seenUnbound = new Set<string>();
    let setting = true;
    const watcher = (async () => {
      // What a "*" worker lists, polled as fast as one connection allows while the queues are made.
      while (setting) {
        const { rows } = await db.pool.query("SELECT queue_name FROM pgbus.job_queues() AS queue_name WHERE queue_name LIKE 'ev_race_%'");
        for (const row of rows) seenUnbound.add(row.queue_name);
      }
    })();
    await ensureSubscriptions(db.pool, subscribers);
    setting = false;
    await watcher;
    assert.deepEqual([...seenUnbound], [], "queues listed for wildcard workers while their binding was missing");
    const bound = await db.pool.query("SELECT count(*)::int AS n FROM pgmq.topic_bindings WHERE queue_name LIKE 'ev_race_%'");
    assert.equal(bound.rows[0].n, 15);
  });
});
