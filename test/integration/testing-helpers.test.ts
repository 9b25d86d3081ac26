import assert from "node:assert/strict";
import { AssertionError } from "node:assert";
import { after, before, describe, test } from "node:test";
import { Pgbus, ValidationError, defineJob, defineSubscriber } from "../../src/index.ts";
import type { JobContext } from "../../src/index.ts";
import {
  InlineJobError,
  advanceTime,
  drain,
  enqueued,
  expectEnqueued,
  expectPublished,
  fake,
  inline,
  modeOf,
  now,
  real,
  runEnqueued,
} from "../../src/testing/index.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";

/**
 * pgbus/testing, the helpers for users' test suites. Fake and inline mode never touch a
 * database (the bus below points at a port nothing listens on); drain and advanceTime run
 * against the real test database.
 */
const NOWHERE = "postgres://nobody@127.0.0.1:1/none";

describe("fake mode", () => {
  const job = defineJob<{ n: number; at?: Date }>({ name: "fake_job", perform() {} });
  const bus = new Pgbus({ connectionString: NOWHERE, jobs: [job] });
  after(() => bus.close());

  test("records payloads as a handler would get them (JSON), with ids, delays and the transaction flag", async () => {
    fake(bus);
    const at = new Date("2030-01-01T00:00:00Z");
    const [first] = await bus.enqueueMany(job, [{ n: 1, at }]);
    await bus.enqueue(job, { n: 2 }, { delayMs: 5_000, client: { query: async () => ({ rows: [] }) } });
    const records = enqueued(bus, job);
    assert.equal(records[0]!.id, first);
    assert.deepEqual(records[0]!.payload, { n: 1, at: at.toISOString() });
    assert.equal(records[1]!.runAt.getTime() - records[1]!.enqueuedAt.getTime(), 5_000);
    assert.equal(records[1]!.inTransaction, true);
    assert.equal(modeOf(bus), "fake");
  });

  test("a payload that is not JSON fails the enqueue as for real", async () => {
    fake(bus);
    await assert.rejects(bus.enqueue(job, { n: 1n } as unknown as { n: number }), (error: unknown) => error instanceof Error);
    assert.equal(enqueued(bus).length, 0);
  });

  test("expectations accept partial objects, predicates and asymmetric matchers, and explain a miss", async () => {
    fake(bus);
    await bus.enqueue(job, { n: 3 });
    await bus.publish("orders.created", { id: 9, lines: [1, 2] });
    expectEnqueued(bus, "fake_job", { n: 3 });
    expectEnqueued(bus, job, { n: { asymmetricMatch: (value: unknown) => typeof value === "number" } as unknown as number });
    expectPublished(bus, "orders.#", (payload: { id: number }) => payload.id === 9, { count: 1 });
    expectPublished(bus, "orders.created", { lines: [1, 2] });
    assert.throws(
      () => expectEnqueued(bus, job, { n: 4 }),
      (error: unknown) => error instanceof AssertionError && /found 0[\s\S]*fake_job \{"n":3\}/.test(error.message),
    );
    assert.throws(() => expectPublished(bus, "orders.created", { lines: [1] }), AssertionError);
  });

  test("the fake clock makes delayed jobs due", async () => {
    fake(bus);
    const start = now(bus).getTime();
    await bus.enqueue(job, { n: 5 }, { delayMs: 60_000 });
    assert.equal((await runEnqueued(bus)).pending, 1);
    await advanceTime(bus, 60_000);
    assert.ok(now(bus).getTime() - start >= 60_000);
    const result = await runEnqueued(bus);
    assert.equal(result.ran.length, 1);
    assert.equal(result.pending, 0);
  });

  test("real(bus) restores the bus's own methods", () => {
    fake(bus);
    real(bus);
    assert.equal(modeOf(bus), "real");
    assert.equal(Object.hasOwn(bus, "enqueue"), false);
    assert.throws(() => enqueued(bus), /not in fake mode/);
  });
});

describe("inline mode", () => {
  test("runs the handler with a worker's context, validated payload and timeout", async () => {
    const seen: Array<Omit<JobContext, "logger" | "signal"> & { aborted: boolean; payload: unknown }> = [];
    const schema = {
      "~standard": {
        validate: (value: unknown) =>
          typeof (value as { n?: unknown }).n === "number"
            ? { value: { n: (value as { n: number }).n * 10 } }
            : { issues: [{ message: "n must be a number", path: ["n"] }] },
      },
    };
    const job = defineJob<{ n: number }>({
      name: "inline_ctx",
      queue: "inline_q",
      schema,
      perform(payload, ctx) {
        seen.push({ messageId: ctx.messageId, attempt: ctx.attempt, job: ctx.job, queue: ctx.queue, aborted: ctx.signal.aborted, payload });
      },
    });
    const bus = inline(new Pgbus({ connectionString: NOWHERE, jobs: [job] }));
    const id = await bus.enqueue(job, { n: 2 });
    assert.deepEqual(seen, [{ messageId: id, attempt: 1, job: "inline_ctx", queue: "inline_q", aborted: false, payload: { n: 20 } }]);
    await assert.rejects(bus.enqueue(job, { n: "x" } as unknown as { n: number }), ValidationError);
    await bus.close();
  });

  test("a handler past its timeout is aborted and fails as in a worker", async () => {
    const job = defineJob({
      name: "inline_slow",
      timeoutMs: 50,
      perform: (_payload, ctx) =>
        new Promise<void>((_resolve, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason))),
    });
    const bus = inline(new Pgbus({ connectionString: NOWHERE, jobs: [job] }));
    const error = await bus.enqueue(job, {}).catch((thrown: unknown) => thrown);
    assert.ok(error instanceof InlineJobError);
    assert.equal(error.runs[0]!.ok, false);
    assert.match(error.runs[0]!.error!.name, /Abort|Timeout/);
    await bus.close();
  });

  test("a thrown non-Error is reported, not lost; retries run until maxRetries", async () => {
    let runs = 0;
    const job = defineJob({
      name: "inline_flaky",
      maxRetries: 3,
      perform() {
        runs += 1;
        if (runs < 3) throw "not yet";
      },
    });
    const bus = inline(new Pgbus({ connectionString: NOWHERE, jobs: [job] }), { retries: true });
    await bus.enqueue(job, {});
    assert.equal(runs, 3);
    inline(bus);
    runs = 0;
    const error = await bus.enqueue(job, {}).catch((thrown: unknown) => thrown);
    assert.ok(error instanceof InlineJobError);
    assert.equal(error.cause, "not yet");
    assert.equal(error.runs[0]!.error!.name, "NonError");
    await bus.close();
  });

  test("publish runs the matching subscribers only", async () => {
    const got: string[] = [];
    const a = defineSubscriber({ name: "inline_a", pattern: "orders.*", handle: (event) => void got.push(`a:${event.routingKey}`) });
    const b = defineSubscriber({ name: "inline_b", pattern: "users.#", handle: (event) => void got.push(`b:${event.routingKey}`) });
    const bus = inline(new Pgbus({ connectionString: NOWHERE, jobs: [a, b] }));
    const event = await bus.publish("orders.paid", { id: 1 });
    assert.deepEqual(got, ["a:orders.paid"]);
    assert.equal(event.queues, 1);
    await bus.close();
  });
});

describe("drain and advanceTime on a real database", () => {
  let db: TestDatabase;
  let bus: Pgbus;
  const ran: number[] = [];
  const work = defineJob<{ n: number }>({
    name: "drain_work",
    queue: "drain_q",
    maxRetries: 1,
    backoff: { baseMs: 10_000, maxMs: 10_000, jitter: 0 },
    perform({ n }) {
      if (n < 0) throw new Error(`negative: ${n}`);
      ran.push(n);
    },
  });
  before(async () => {
    db = await createTestDatabase("testing_helpers");
    bus = new Pgbus({ connectionString: db.url, jobs: [work] });
    await bus.migrate();
  });
  after(async () => {
    await bus.close();
    await db.drop();
  });

  test("drain runs every due message, leaves the rest pending, and reports failures", async () => {
    await bus.enqueueMany(work, [{ n: 1 }, { n: 2 }, { n: -1 }]);
    await bus.enqueue(work, { n: 3 }, { delayMs: 3_600_000 });
    const result = await drain(bus);
    assert.deepEqual(ran.sort(), [1, 2]);
    assert.equal(result.ran.length, 2);
    assert.equal(result.failed.length, 1);
    assert.equal(result.failed[0]!.retryInMs, 10_000);
    assert.equal(result.pending, 2, "the delayed job and the retry");

    assert.equal(await advanceTime(db.pool, 10_000, { queues: ["drain_q"] }), 2);
    const second = await drain(bus);
    assert.equal(second.ran.length, 0, "the delayed job is still an hour away... minus ten seconds");
    assert.equal(second.deadLettered.length, 1);
    assert.equal(second.deadLettered[0]!.reason, "retries_exhausted");

    await advanceTime(db.url, 3_600_000, { queues: ["drain_q"] });
    assert.equal((await drain(bus)).ran.length, 1);
    assert.deepEqual(ran.sort(), [1, 2, 3]);
  });

  test("drain refuses a bus in fake mode; advanceTime(db) needs the queues", async () => {
    fake(bus);
    await assert.rejects(drain(bus), /fake mode/);
    real(bus);
    await assert.rejects(advanceTime(db.pool, 1), /name the queues/);
  });
});
