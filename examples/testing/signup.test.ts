/**
 * How an application tests its pgbus code with `pgbus/testing` and node:test (run it with
 * `node --import tsx --test examples/testing/signup.test.ts`; `npm test` runs it too).
 * In an application the imports would be `from "pgbus"` and `from "pgbus/testing"`.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { Pgbus, ValidationError } from "../../src/index.ts";
import {
  InlineJobError,
  type TestDatabase,
  advanceTime,
  createTestDatabase,
  drain,
  expectEnqueued,
  expectNotEnqueued,
  expectPublished,
  fake,
  inline,
  real,
  runEnqueued,
} from "../../src/testing/index.ts";
import { auditLog, auditSignups, sendWelcomeEmail, sentEmails, signUp } from "./signup.ts";

beforeEach(() => {
  sentEmails.length = 0;
  auditLog.length = 0;
});

describe("fake mode: nothing reaches a database", () => {
  // Fake mode never connects, so any URL will do.
  const bus = new Pgbus({ connectionString: "postgres://unused@127.0.0.1:1/unused", jobs: [sendWelcomeEmail, auditSignups] });
  beforeEach(() => fake(bus));
  after(() => bus.close());

  test("signing up enqueues the welcome email and publishes the event", async () => {
    await signUp(bus, { id: 7, email: "ada@example.com" });
    expectEnqueued(bus, sendWelcomeEmail, { email: "ada@example.com" });
    expectEnqueued(bus, sendWelcomeEmail, (payload) => payload.userId === 7, { count: 1 });
    expectPublished(bus, "users.signed_up", { userId: 7 });
    expectPublished(bus, "users.*"); // patterns work too
    assert.deepEqual(sentEmails, [], "nothing ran");
  });

  test("an invalid payload fails the enqueue, as it would for real", async () => {
    await assert.rejects(signUp(bus, { id: 8, email: "not-an-address" }), ValidationError);
    expectNotEnqueued(bus, sendWelcomeEmail);
  });

  test("a delayed job runs once the fake clock passes its time", async () => {
    await signUp(bus, { id: 9, email: "grace@example.com" }, { trialEmailInMs: 3_600_000 });
    assert.equal((await runEnqueued(bus)).ran.length, 0, "not due yet");
    await advanceTime(bus, 3_600_000);
    const result = await runEnqueued(bus);
    assert.equal(result.ran.length, 1);
    assert.deepEqual(sentEmails, ["grace@example.com"]);
  });
});

describe("inline mode: handlers run at once, in the test's process", () => {
  const bus = new Pgbus({ connectionString: "postgres://unused@127.0.0.1:1/unused", jobs: [sendWelcomeEmail, auditSignups] });
  after(() => bus.close());

  test("the job and the subscriber run during signUp", async () => {
    inline(bus);
    await signUp(bus, { id: 1, email: "ada@example.com" });
    assert.deepEqual(sentEmails, ["ada@example.com"]);
    assert.deepEqual(auditLog, ["users.signed_up:1"]);
  });

  test("a failing handler rejects the enqueue with the handler's error as the cause", async () => {
    inline(bus);
    const error = await signUp(bus, { id: 2, email: "x@bounce.example" }).catch((thrown: unknown) => thrown);
    assert.ok(error instanceof InlineJobError);
    assert.match(error.message, /mailbox x@bounce.example does not exist/);
    assert.ok(error.cause instanceof Error);
    assert.equal(error.runs.length, 1, "retries are off unless asked for");
  });

  test("with retries, a job that keeps failing ends as a worker would: dead-lettered", async () => {
    inline(bus, { retries: true });
    const error = await signUp(bus, { id: 3, email: "y@bounce.example" }).catch((thrown: unknown) => thrown);
    assert.ok(error instanceof InlineJobError);
    assert.equal(error.runs.length, 3, "maxRetries 2: three runs");
    assert.equal(error.deadLetterReason, "retries_exhausted");
    real(bus);
  });
});

describe("drain: the real queues of a real PostgreSQL", () => {
  // DATABASE_URL's server, or an embedded PostgreSQL when it is unset.
  let db: TestDatabase;
  let bus: Pgbus;
  before(async () => {
    db = await createTestDatabase();
    bus = new Pgbus({ connectionString: db.url, jobs: [sendWelcomeEmail, auditSignups] });
    await bus.migrate();
  });
  after(async () => {
    await bus.close();
    await db.drop();
  });

  test("drain runs what signUp queued, and reports it", async () => {
    await signUp(bus, { id: 1, email: "ada@example.com" });
    const result = await drain(bus);
    assert.deepEqual(result.ran.map((run) => run.job).sort(), ["send_welcome_email", "subscriber.audit_signups"]);
    assert.deepEqual(sentEmails, ["ada@example.com"]);
    assert.equal(result.pending, 0);
  });

  test("a delayed job waits until time is moved forward", async () => {
    await signUp(bus, { id: 2, email: "grace@example.com" }, { trialEmailInMs: 3_600_000 });
    const first = await drain(bus, { queues: ["mailers"] });
    assert.equal(first.ran.length, 0);
    assert.equal(first.pending, 1);
    await advanceTime(db.pool, 3_600_000, { queues: ["mailers"] });
    const second = await drain(bus, { queues: ["mailers"] });
    assert.equal(second.ran.length, 1);
    assert.deepEqual(sentEmails, ["grace@example.com"]);
  });

  test("a failing job is retried after its backoff, then dead-lettered", async () => {
    await signUp(bus, { id: 3, email: "z@bounce.example" });
    const failures = [];
    let result = await drain(bus, { queues: ["mailers"] });
    failures.push(...result.failed);
    while (result.pending > 0) {
      await advanceTime(db.pool, 60_000, { queues: ["mailers"] }); // the job's backoff
      result = await drain(bus, { queues: ["mailers"] });
      failures.push(...result.failed);
      if (result.deadLettered.length > 0) break;
    }
    assert.equal(failures.length, 3);
    assert.equal(result.deadLettered[0]?.reason, "retries_exhausted");
    assert.match(result.deadLettered[0]!.error.message, /does not exist/);
  });
});
