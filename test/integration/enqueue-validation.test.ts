import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { type PgbusErrorCode, ValidationError } from "../../src/errors.ts";
import { z } from "zod";
import { defineJob } from "../../src/jobs/define.ts";
import type { JobDefinition } from "../../src/jobs/define.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";

/**
 * What enqueue, publish and the outbox refuse, and what they must not: each bad value ends
 * in a ValidationError with a stable code that names the value and what is valid, thrown
 * before any SQL (so a caller's transaction stays usable); good values that look alike
 * (a backslash followed by "u0000") go through untouched.
 */

let db: TestDatabase;
let bus: Pgbus;
const note = defineJob<unknown>({ name: "note", queue: "valid", async perform() {} });

before(async () => {
  db = await createTestDatabase("enqueue_validation");
  bus = new Pgbus({ connectionString: db.url, jobs: [note] });
  await bus.migrate();
  bus.subscribe("notes.#", async () => {}, { name: "notes_audit" });
  await bus.migrate();
});
after(async () => {
  try {
    await bus.close();
  } finally {
    await db.drop();
  }
});
beforeEach(async () => {
  await bus.queues.purgeQueue("valid");
  await bus.queues.purgeQueue("ev_notes_audit");
  await db.pool.query("DELETE FROM pgbus.outbox");
});

const queued = async () => (await bus.queues.metrics("valid")).queueLength;
const outboxRows = async () => Number((await db.pool.query("SELECT count(*) AS n FROM pgbus.outbox")).rows[0].n);

function refused(code: PgbusErrorCode, ...fragments: Array<string | RegExp>) {
  return (error: unknown): true => {
    assert.ok(error instanceof ValidationError, `a ValidationError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    for (const fragment of fragments) {
      if (typeof fragment === "string")
        assert.ok(error.message.includes(fragment), `message:\n${error.message}\nshould contain: ${fragment}`);
      else assert.match(error.message, fragment);
    }
    return true;
  };
}

const LONE = "ok 😀".slice(0, 4);

describe("payload text", () => {
  test("a backslash followed by u0000 (no NUL) is stored as it is, in enqueue, send, publish and the outbox", async () => {
    const text = "C:\\u0000\\dir and \\\\u0000";
    const id = await bus.enqueue(note, { text });
    const [message] = await bus.queues.read("valid", 30, 1);
    assert.equal(message!.msgId, id);
    assert.deepEqual(message!.message, { job: "note", payload: { text } });
    await bus.queues.send("valid", { text }, { headers: { text } });
    assert.equal((await bus.publish("notes.created", { text })).queues, 1);
    await bus.outbox.publish("notes.created", { text });
    await bus.outbox.enqueue(note, { text });
  });

  test("the NUL character is refused with INVALID_PAYLOAD, naming where it is", async () => {
    await assert.rejects(
      bus.enqueue(note, { items: [{ title: "a\u0000b" }] }),
      refused("INVALID_PAYLOAD", "NUL character", "$.payload.items[0].title", "message 0 for queue valid"),
    );
    await assert.rejects(
      bus.enqueueMany(note, [{ ok: 1 }, { "k\u0000": 1 }]),
      refused("INVALID_PAYLOAD", "message 1 for queue valid", "NUL", "a key in $.payload"),
    );
    await assert.rejects(bus.queues.send("valid", {}, { headers: { h: "\u0000" } }), refused("INVALID_PAYLOAD", "NUL", "$.h"));
    assert.equal(await queued(), 0, "nothing enqueued");
  });

  test("a lone surrogate is refused with INVALID_PAYLOAD naming it and the fix, not a bare DatabaseError 22P02", async () => {
    await assert.rejects(
      bus.enqueue(note, { title: LONE }),
      refused("INVALID_PAYLOAD", "lone surrogate (U+D83D)", "$.payload.title", "toWellFormed"),
    );
    await assert.rejects(bus.queues.send("valid", ["\udc00"]), refused("INVALID_PAYLOAD", "lone surrogate (U+DC00)", "$[0]"));
    await assert.rejects(bus.publish("notes.created", { title: LONE }), refused("INVALID_PAYLOAD", "lone surrogate", "$.payload.title"));
    await assert.rejects(bus.outbox.publish("notes.created", LONE), refused("INVALID_PAYLOAD", "lone surrogate", "$.payload"));
    await assert.rejects(bus.outbox.enqueue(note, { t: LONE }), refused("INVALID_PAYLOAD", "lone surrogate", "$.payload.t"));
    assert.equal(await queued(), 0);
    assert.equal(await outboxRows(), 0);
    // A complete pair is fine.
    await bus.enqueue(note, { title: "ok 😀" });
    assert.equal(await queued(), 1);
  });
});

describe("payload values JSON cannot carry", () => {
  const cases: Array<[string, unknown, string]> = [
    ["undefined", undefined, "got undefined"],
    ["a function", () => 1, "got a function"],
    ["a symbol", Symbol("s"), "got a symbol"],
    ["NaN", Number.NaN, "got NaN"],
    ["Infinity", Number.POSITIVE_INFINITY, "got Infinity"],
  ];
  for (const [label, value, says] of cases) {
    test(`${label} is refused by enqueue, enqueueMany, publish and the outbox`, async () => {
      await assert.rejects(
        bus.enqueue(note, value),
        refused("INVALID_PAYLOAD", `payload of job note is not JSON-serialisable: ${says}`, "JSON cannot carry"),
      );
      await assert.rejects(
        bus.enqueueMany(note, [{}, value]),
        refused("INVALID_PAYLOAD", `payload 1 of job note is not JSON-serialisable: ${says}`),
      );
      await assert.rejects(
        bus.publish("notes.created", value),
        refused("INVALID_PAYLOAD", `payload of event notes.created is not JSON-serialisable: ${says}`),
      );
      await assert.rejects(bus.outbox.publish("notes.created", value), refused("INVALID_PAYLOAD", says));
      await assert.rejects(bus.outbox.enqueue(note, value), refused("INVALID_PAYLOAD", says));
      await assert.rejects(
        bus.queues.send("valid", value),
        refused("INVALID_PAYLOAD", "message for queue valid is not JSON-serialisable", says),
      );
      assert.equal(await queued(), 0);
      assert.equal(await outboxRows(), 0);
    });
  }

  test("null, false, 0 and empty strings are payloads like any other", async () => {
    await bus.enqueueMany(note, [null, false, 0, ""]);
    assert.equal(await queued(), 4);
  });
});

describe("delays and times", () => {
  test("delayMs out of range is refused with INVALID_OPTION naming the value and the range", async () => {
    for (const delayMs of [1e17, -1, Number.NaN, "5" as unknown as number]) {
      await assert.rejects(
        bus.enqueue(note, {}, { delayMs }),
        refused("INVALID_OPTION", "delayMs must be a number of milliseconds from 0 to", String(delayMs)),
      );
      await assert.rejects(bus.queues.send("valid", {}, { delayMs }), refused("INVALID_OPTION", "delayMs"));
      await assert.rejects(bus.publish("notes.created", {}, { delayMs }), refused("INVALID_OPTION", "delayMs must be a number from 0 to"));
      await assert.rejects(bus.outbox.publish("notes.created", {}, { delayMs }), refused("INVALID_OPTION", "delayMs"));
      await assert.rejects(bus.outbox.enqueue(note, {}, { delayMs }), refused("INVALID_OPTION", "delayMs"));
    }
    // The longest delay taken still works.
    await bus.enqueue(note, {}, { delayMs: 100 * 365 * 24 * 3_600_000 });
    assert.equal(await queued(), 1);
  });

  test("runAt outside years 1 to 9999, or not a valid Date, is refused with INVALID_OPTION", async () => {
    const bad = [new Date(Date.UTC(-5000, 0, 1)), new Date(Date.UTC(20000, 0, 1)), new Date(Number.NaN), "2030-01-01" as unknown as Date];
    for (const runAt of bad) {
      await assert.rejects(
        bus.enqueue(note, {}, { runAt }),
        refused("INVALID_OPTION", "runAt must be a valid Date from 0001-01-01T00:00:00.000Z to 9999-12-31"),
      );
    }
    await assert.rejects(bus.enqueue(note, {}, { runAt: bad[0] }), refused("INVALID_OPTION", "got -005000-01-01T00:00:00.000Z"));
    await bus.enqueue(note, {}, { runAt: new Date("0001-01-01T00:00:00Z") }); // in the past: visible at once
    await bus.enqueue(note, {}, { runAt: new Date("9999-12-31T00:00:00Z") });
    assert.equal(await queued(), 2);
  });
});

describe("arguments of the wrong shape", () => {
  test('enqueueMany("abc") and enqueue of something that is not a job definition are refused with INVALID_OPTION', async () => {
    await assert.rejects(
      bus.enqueueMany(note, "abc" as unknown as unknown[]),
      refused("INVALID_OPTION", 'enqueueMany needs an array of payloads for job note, got the string "abc"'),
    );
    await assert.rejects(bus.enqueueMany(note, { length: 1 } as unknown as unknown[]), refused("INVALID_OPTION", "got an object"));
    await assert.rejects(
      bus.enqueue("note" as unknown as JobDefinition, {}),
      refused("INVALID_OPTION", 'enqueue needs a job definition made with defineJob, got the string "note"'),
    );
    await assert.rejects(bus.enqueue(undefined as unknown as JobDefinition, {}), refused("INVALID_OPTION", "got undefined"));
    assert.deepEqual(await bus.enqueueMany(note, []), []);
  });

  test("refusals happen before any SQL: the caller's transaction stays usable", async () => {
    const client = await db.pool.connect();
    try {
      await client.query("BEGIN");
      await assert.rejects(bus.enqueue(note, { t: LONE }, { client }), refused("INVALID_PAYLOAD"));
      await assert.rejects(bus.enqueue(note, {}, { client, delayMs: 1e17 }), refused("INVALID_OPTION"));
      await assert.rejects(bus.enqueue(note, undefined, { client }), refused("INVALID_PAYLOAD"));
      await bus.enqueue(note, { fine: true }, { client });
      await client.query("COMMIT");
    } finally {
      client.release();
    }
    assert.equal(await queued(), 1);
  });
});

describe("a payload its job's schema refuses", () => {
  const signup = defineJob({
    name: "signup_mail",
    queue: "mailers",
    schema: z.object({ to: z.string().email(), user: z.object({ id: z.number() }) }),
    async perform() {},
  });

  test("names each field and its problem, and carries the schema's issues on the error", async () => {
    await assert.rejects(
      bus.enqueue(signup, { to: "nobody", user: { id: "7" } } as unknown as { to: string; user: { id: number } }),
      (error: unknown) => {
        assert.ok(error instanceof ValidationError);
        assert.equal(error.code, "INVALID_PAYLOAD");
        assert.match(error.message, /^payload of job signup_mail is invalid: to: .*; user\.id: /);
        assert.deepEqual(
          error.issues?.map((issue) => issue.path),
          ["to", "user.id"],
        );
        return true;
      },
    );
  });

  test("in a batch, the message names which payload", async () => {
    await assert.rejects(
      bus.enqueueMany(signup, [
        { to: "ada@example.com", user: { id: 1 } },
        { to: "x", user: { id: 2 } },
      ]),
      /^ValidationError: payload 1 of job signup_mail is invalid: to: /,
    );
  });
});
