/**
 * The same helpers under vitest (`npm run test:vitest`): expectEnqueued and expectPublished
 * take vitest's asymmetric matchers anywhere in the payload, and throw an AssertionError
 * that vitest reports like its own. In an application the imports would be `from "pgbus"`
 * and `from "pgbus/testing"`.
 */
import { afterAll, beforeEach, describe, expect, test } from "vitest";
import { Pgbus } from "../../src/index.ts";
import { InlineJobError, createTestDatabase, drain, expectEnqueued, expectPublished, fake, inline } from "../../src/testing/index.ts";
import { auditLog, auditSignups, sendWelcomeEmail, sentEmails, signUp } from "./signup.ts";

beforeEach(() => {
  sentEmails.length = 0;
  auditLog.length = 0;
});

describe("fake mode", () => {
  const bus = new Pgbus({ connectionString: "postgres://unused@127.0.0.1:1/unused", jobs: [sendWelcomeEmail, auditSignups] });
  beforeEach(() => void fake(bus));
  afterAll(() => bus.close());

  test("vitest's asymmetric matchers work inside the payload matcher", async () => {
    await signUp(bus, { id: 7, email: "ada@example.com" });
    expectEnqueued(bus, sendWelcomeEmail, { userId: expect.any(Number), email: expect.stringContaining("@example.com") });
    expectPublished(bus, "users.signed_up", expect.objectContaining({ userId: 7 }));
    expect(() => expectEnqueued(bus, sendWelcomeEmail, { email: expect.stringMatching(/@elsewhere/) })).toThrow(/found 0/);
  });
});

describe("inline mode", () => {
  const bus = new Pgbus({ connectionString: "postgres://unused@127.0.0.1:1/unused", jobs: [sendWelcomeEmail, auditSignups] });
  afterAll(() => bus.close());

  test("a failing handler rejects with an InlineJobError whose cause is the handler's error", async () => {
    inline(bus);
    await expect(signUp(bus, { id: 2, email: "x@bounce.example" })).rejects.toBeInstanceOf(InlineJobError);
    await expect(signUp(bus, { id: 3, email: "y@bounce.example" })).rejects.toMatchObject({
      cause: expect.objectContaining({ message: "mailbox y@bounce.example does not exist" }),
    });
  });
});

describe("drain on a real database", () => {
  test("runs what was queued", async () => {
    const db = await createTestDatabase();
    const bus = new Pgbus({ connectionString: db.url, jobs: [sendWelcomeEmail, auditSignups] });
    try {
      await bus.migrate();
      await signUp(bus, { id: 1, email: "ada@example.com" });
      const result = await drain(bus);
      expect(result.ran.map((run) => run.job).sort()).toEqual(["send_welcome_email", "subscriber.audit_signups"]);
      expect(sentEmails).toEqual(["ada@example.com"]);
    } finally {
      await bus.close();
      await db.drop();
    }
  }, 60_000);
});
