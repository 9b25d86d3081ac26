import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Pgbus } from "../../src/bus.ts";
import { MAX_ERROR_TEXT_CHARS } from "../../src/errors.ts";
import { HIGH_SURROGATE, MAX_RETRIES, THROWS, unstorable } from "../fixtures/error-records-jobs.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";

/**
 * Error records PostgreSQL cannot store as thrown (NUL, lone surrogates) must not keep a
 * job from settling: a run whose error could not be written would re-run every VT and
 * never reach the DLQ. Each kind goes through its retries and then to the DLQ, once.
 */

const JOBS_MODULE = fileURLToPath(new URL("../fixtures/error-records-jobs.ts", import.meta.url));
let db: TestDatabase;
let bus: Pgbus;

before(async () => {
  db = await createTestDatabase("error_records");
  process.env["PGBUS_TEST_DB_URL"] = db.url;
  bus = new Pgbus({ connectionString: db.url, jobs: [unstorable] });
  await bus.migrate();
  await db.pool.query("CREATE TABLE error_runs (msg_id bigint NOT NULL)");
});
after(async () => {
  try {
    await bus.close();
  } finally {
    await db.drop();
  }
});

const count = async (text: string, values: unknown[] = []) =>
  Number(Object.values((await db.pool.query(text, values)).rows[0] as object)[0]);

describe("error records PostgreSQL cannot store as thrown", () => {
  for (const executionMode of ["async", "threads"]) {
    test(`${executionMode} mode: each goes through its retries to the DLQ, once, with U+FFFD in place of what jsonb refuses`, async () => {
      await db.pool.query("TRUNCATE error_runs, pgbus.failed_jobs");
      await bus.queues.purgeQueue("errs_dlq");
      const kinds = Object.keys(THROWS);
      const ids = new Map<string, string>();
      for (const kind of kinds) ids.set(kind, await bus.enqueue(unstorable, { kind }));

      const worker = bus.worker({
        queues: ["errs"],
        capacity: 10,
        pollIntervalMs: 50,
        visibilityTimeoutSec: 1,
        executionMode,
        jobsModule: JOBS_MODULE,
      });
      await worker.start();
      try {
        await waitFor(
          async () => (await count("SELECT count(*) FROM pgmq.q_errs_dlq")) === kinds.length,
          "every message in the DLQ",
          30_000,
        );
      } finally {
        await worker.stop();
      }

      assert.equal(await count("SELECT count(*) FROM pgmq.q_errs"), 0, "nothing left in the queue");
      for (const [kind, id] of ids) {
        assert.equal(
          await count("SELECT count(*) FROM error_runs WHERE msg_id = $1", [id]),
          MAX_RETRIES + 1,
          `${kind}: runs = maxRetries + 1`,
        );
        const outcomes = (await db.pool.query("SELECT outcome FROM pgbus.failed_jobs WHERE msg_id = $1 ORDER BY id", [id])).rows.map(
          (row: { outcome: string }) => row.outcome,
        );
        assert.deepEqual(outcomes, [...new Array<string>(MAX_RETRIES).fill("retried"), "dead"], `${kind}: failure rows`);
      }

      const dead = async (kind: string) => {
        const { rows } = await db.pool.query(
          "SELECT headers -> 'pgbus_error' AS error FROM pgmq.q_errs_dlq WHERE headers ->> 'pgbus_source_msg_id' = $1",
          [ids.get(kind)],
        );
        return rows[0].error as { name: string; message: string; stack?: string; reason: string };
      };
      assert.equal((await dead("nul")).message, "bad\ufffdbyte");
      assert.equal((await dead("nul")).reason, "retries_exhausted");
      assert.equal((await dead("surrogate")).message, "price \ufffd");
      assert.equal((await dead("escape")).message, "literal \\u0000 text", "six plain characters are kept as they are");
      const fields = await dead("fields");
      assert.equal(fields.name, "Nul\ufffdName\ufffd");
      assert.equal(fields.stack, "stack\ufffdwith nul");
      assert.equal((await dead("string")).message, `thrown string \ufffd \ufffd`);
      assert.equal((await dead("string")).name, "NonError");
      const huge = (await dead("huge")).message;
      assert.ok(huge.length <= MAX_ERROR_TEXT_CHARS, `cut to at most ${MAX_ERROR_TEXT_CHARS} characters, got ${huge.length}`);
      assert.ok(huge.endsWith("... (cut, 26385 characters in all)"), `ends with the note: ${huge.slice(-60)}`);

      const retried = (
        await db.pool.query(
          "SELECT error ->> 'message' AS message FROM pgbus.failed_jobs WHERE msg_id = $1 AND outcome = 'retried' LIMIT 1",
          [ids.get("surrogate")],
        )
      ).rows[0] as { message: string };
      assert.equal(retried.message, "price \ufffd", "the retry's failure row holds the same storable text");
    });
  }

  test("the queue client's move to the DLQ takes any error record, and falls back to minimal headers if the insert still refuses it", async () => {
    const direct = await bus.queues.send("errs", { job: "unstorable_error", payload: { kind: "nul" } });
    assert.ok(
      await bus.queues.moveToDeadLetterQueue("errs", direct, { name: "E\u0000", message: `m\u0000${HIGH_SURROGATE}`, reason: "r\u0000" }),
    );
    const row = (
      await db.pool.query("SELECT headers -> 'pgbus_error' AS error FROM pgmq.q_errs_dlq WHERE headers ->> 'pgbus_source_msg_id' = $1", [
        direct,
      ])
    ).rows[0] as { error: Record<string, string> };
    assert.deepEqual(row.error, { name: "E\ufffd", message: "m\ufffd\ufffd", reason: "r\ufffd" });

    // A DLQ that refuses this error's text (standing in for any data error the insert could raise).
    await db.pool.query(`CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.headers -> 'pgbus_error' ->> 'message' LIKE 'poison%' THEN
          RAISE EXCEPTION 'refusing this text' USING ERRCODE = 'data_exception';
        END IF;
        RETURN NEW;
      END $$`);
    await db.pool.query("CREATE TRIGGER refuse_poison BEFORE INSERT ON pgmq.q_errs_dlq FOR EACH ROW EXECUTE FUNCTION refuse_poison()");
    try {
      const id = await bus.queues.send("errs", { job: "unstorable_error", payload: { kind: "nul" } });
      const dlqId = await bus.queues.moveToDeadLetterQueue("errs", id, {
        name: "PoisonError",
        message: "poison text",
        reason: "retries_exhausted",
      });
      assert.ok(dlqId, "moved despite the refusal");
      const { error } = (await db.pool.query("SELECT headers -> 'pgbus_error' AS error FROM pgmq.q_errs_dlq WHERE msg_id = $1", [dlqId]))
        .rows[0] as { error: { reason: string; name: string; message: string } };
      assert.equal(error.reason, "retries_exhausted");
      assert.equal(error.name, "PoisonError");
      assert.match(error.message, /the error record could not be stored \(refusing this text\)/);
      assert.equal(await count("SELECT count(*) FROM pgmq.q_errs WHERE msg_id = $1", [id]), 0, "gone from the queue");
    } finally {
      await db.pool.query("DROP TRIGGER refuse_poison ON pgmq.q_errs_dlq");
    }
  });
});
