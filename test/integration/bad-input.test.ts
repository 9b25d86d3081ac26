import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Pgbus } from "../../src/bus.ts";
import { loadConfig } from "../../src/config/load.ts";
import { parseQueueDsl } from "../../src/config/queue-dsl.ts";
import { resolveConfig } from "../../src/config/schema.ts";
import { PgbusError, type PgbusErrorCode, ValidationError } from "../../src/errors.ts";
import { defineJob } from "../../src/jobs/define.ts";
import type { Logger } from "../../src/logger.ts";
import type { Worker, WorkerOptions } from "../../src/worker/worker.ts";
import {
  closeFixturePool,
  doomed,
  fine,
  hangIgnoresSignal,
  hangRespectsSignal,
  needsNumber,
  rejectsEmpty,
  throwsString,
  throwsUndefined,
} from "../fixtures/chaos/bad-input-jobs.ts";
import { FIXTURE_CONFIG, cliEnv, runCli, waitFor } from "../fixtures/process/spawn.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";
import { setEnv } from "../helpers/env.ts";

/**
 * The bad-input catalogue: one test per kind of bad input, each ending in a typed error
 * (with a stable `code` and a message that names the bad value) or a DLQ entry that says
 * why, never a crash, a crash loop or a silent drop.
 */

const JOBS_MODULE = fileURLToPath(new URL("../fixtures/chaos/bad-input-jobs.ts", import.meta.url));
const jobs = [throwsString, throwsUndefined, rejectsEmpty, hangRespectsSignal, hangIgnoresSignal, needsNumber, fine, doomed];

let db: TestDatabase;
let restoreEnv = () => {};
let bus: Pgbus;
const logLines: Array<{ level: string; msg: string; err?: unknown }> = [];
const logger: Logger = Object.fromEntries(
  ["debug", "info", "warn", "error"].map((level) => [
    level,
    (obj: object | string, msg?: string) => void logLines.push({ level, msg: msg ?? String(obj), err: (obj as { err?: unknown }).err }),
  ]),
) as unknown as Logger;

before(async () => {
  db = await createTestDatabase("bad_input");
  restoreEnv = setEnv("PGBUS_TEST_DB_URL", db.url);
  bus = new Pgbus({ connectionString: db.url, jobs, logger, maxPayloadBytes: 1_024 });
  await bus.migrate();
  await db.pool.query(
    "CREATE TABLE bad_input_runs (msg_id bigint NOT NULL, job text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())",
  );
});
after(async () => {
  try {
    await bus.close();
    await closeFixturePool();
  } finally {
    restoreEnv();
    await db.drop();
  }
});
beforeEach(async () => {
  await db.pool.query("TRUNCATE bad_input_runs, pgbus.failed_jobs");
  for (const queue of ["bad", "bad_dlq", "bad_other"]) await bus.queues.purgeQueue(queue);
});

const scalar = async (text: string, values: unknown[] = []) =>
  Number(Object.values((await db.pool.query(text, values)).rows[0] as object)[0]);

/** Runs a worker on `queues` for the duration of `body`; always stops it. */
async function withWorker(options: Partial<WorkerOptions>, body: (worker: Worker) => Promise<void>): Promise<void> {
  const worker = bus.worker({ queues: ["bad"], capacity: 5, pollIntervalMs: 100, jobsModule: JOBS_MODULE, ...options });
  await worker.start();
  try {
    await body(worker);
  } finally {
    await worker.stop();
  }
}

interface DeadLetter {
  message: unknown;
  reason: string;
  error: { name: string; message: string };
  sourceMsgId: string;
}

/** Waits for `count` messages in bad_dlq and returns them with their reasons. */
async function deadLetters(count: number): Promise<DeadLetter[]> {
  await waitFor(async () => (await scalar("SELECT count(*) FROM pgmq.q_bad_dlq")) >= count, `${count} dead letter(s)`, 15_000, 50);
  // In the order the messages were sent: dead-lettering runs concurrently, so DLQ order may differ.
  const rows = (await db.pool.query("SELECT message, headers FROM pgmq.q_bad_dlq ORDER BY (headers ->> 'pgbus_source_msg_id')::bigint"))
    .rows as Array<{ message: unknown; headers: Record<string, unknown> }>;
  return rows.map(({ message, headers }) => {
    const error = headers["pgbus_error"] as { name: string; message: string; reason: string };
    return {
      message,
      reason: error.reason,
      error: { name: error.name, message: error.message },
      sourceMsgId: String(headers["pgbus_source_msg_id"]),
    };
  });
}

async function failures(id: string): Promise<Array<{ outcome: string; name: string; message: string }>> {
  const result = await db.pool.query(
    "SELECT outcome, error ->> 'name' AS name, error ->> 'message' AS message FROM pgbus.failed_jobs WHERE msg_id = $1 ORDER BY id",
    [id],
  );
  return result.rows as Array<{ outcome: string; name: string; message: string }>;
}

function assertPgbusError(error: unknown, code: PgbusErrorCode, ...fragments: Array<string | RegExp>): true {
  assert.ok(error instanceof PgbusError, `a PgbusError, got ${String(error)}`);
  assert.equal(error.code, code, error.message);
  for (const fragment of fragments) {
    if (typeof fragment === "string")
      assert.ok(error.message.includes(fragment), `message:\n${error.message}\nshould contain: ${fragment}`);
    else assert.match(error.message, fragment);
  }
  return true;
}

describe("bad messages reaching a worker end in the DLQ with the reason", () => {
  test("unknown job name: DLQ, reason unknown_job, naming the job", async () => {
    const id = await bus.queues.send("bad", { job: "no_such_job", payload: { a: 1 } });
    await withWorker({}, async () => {
      const [dead] = await deadLetters(1);
      assert.equal(dead!.reason, "unknown_job");
      assert.equal(dead!.sourceMsgId, id);
      assert.match(dead!.error.message, /no job named "no_such_job" is registered/);
      assert.deepEqual(dead!.message, { job: "no_such_job", payload: { a: 1 } }, "the message is kept as sent");
    });
  });

  test("payload failing the job's schema: refused at enqueue (INVALID_PAYLOAD); from another producer, DLQ invalid_payload without retries", async () => {
    await assert.rejects(bus.enqueue(needsNumber, { n: "seven" } as unknown as { n: number }), (error) =>
      assertPgbusError(error, "INVALID_PAYLOAD", "payload of job needs_number is invalid: n: must be a number"),
    );
    assert.equal((await bus.queues.metrics("bad")).queueLength, 0, "nothing was enqueued");

    const id = await bus.queues.send("bad", { job: "needs_number", payload: { n: "seven" } });
    await withWorker({}, async () => {
      const [dead] = await deadLetters(1);
      assert.equal(dead!.reason, "invalid_payload");
      assert.equal(dead!.error.name, "InvalidPayloadError");
      assert.match(dead!.error.message, /payload of job needs_number is invalid: n: must be a number/);
      assert.deepEqual(
        (await failures(id)).map((f) => f.outcome),
        ["dead"],
        "not retried: retrying cannot fix a payload",
      );
    });
  });

  test("messages that are not JSON objects, inserted by hand: DLQ invalid_message, each kept as it was", async () => {
    const bodies = [`'"text"'`, `'null'`, `'[1,2]'`, `'42'`, `'{}'`, `'{"job": 5, "payload": {}}'`, "NULL"];
    for (const body of bodies) await db.pool.query(`INSERT INTO pgmq.q_bad (vt, message) VALUES (now(), ${body})`);
    await withWorker({ queues: ["bad", "bad_other"] }, async (worker) => {
      const dead = await deadLetters(bodies.length);
      assert.deepEqual(new Set(dead.map((d) => d.reason)), new Set(["invalid_message"]));
      assert.deepEqual(
        dead.map((d) => d.message),
        ["text", null, [1, 2], 42, {}, { job: 5, payload: {} }, null],
        "each message moved to the DLQ as it was",
      );
      for (const d of dead)
        assert.match(d.error.message, /message is not a pgbus job: expected \{"job": string, "payload": \.\.\.\}, got /);
      assert.equal((await bus.queues.metrics("bad")).queueLength, 0);
      assert.equal(
        await scalar("SELECT count(*) FROM pgbus.failed_jobs WHERE outcome = 'dead' AND error ->> 'reason' = 'invalid_message'"),
        bodies.length,
      );
      // Still working: a good job after the bad ones runs.
      const good = await bus.enqueue(fine, {});
      await waitFor(
        async () => (await scalar("SELECT count(*) FROM bad_input_runs WHERE msg_id = $1", [good])) === 1,
        "a good job after the bad ones",
      );
      assert.equal(worker.stats().deadLettered, bodies.length);
    });
  });
});

describe("handlers that throw non-Errors or never settle", () => {
  for (const [what, job, expected] of [
    ["throws a string", throwsString, "a plain string, not an Error"],
    ["throws undefined", throwsUndefined, "handler threw undefined"],
    ["returns a promise rejected with no reason", rejectsEmpty, "handler threw undefined"],
  ] as const) {
    test(`a handler that ${what}: the failure is recorded with a clear message, dead-lettered after its retries`, async () => {
      const id = await bus.enqueue(job, {});
      await withWorker({}, async () => {
        const [dead] = await deadLetters(1);
        assert.equal(dead!.reason, "retries_exhausted");
        assert.deepEqual(dead!.error, { name: "NonError", message: expected });
        assert.deepEqual(await failures(id), [{ outcome: "dead", name: "NonError", message: expected }]);
      });
    });
  }

  test("a handler that never settles but honours ctx.signal: timeoutMs aborts it, the failure is recorded, retried, then dead-lettered", async () => {
    const id = await bus.enqueue(hangRespectsSignal, {});
    await withWorker({}, async (worker) => {
      const [dead] = await deadLetters(1);
      assert.equal(dead!.reason, "retries_exhausted");
      assert.equal(dead!.error.name, "AbortError");
      assert.deepEqual(
        (await failures(id)).map((f) => [f.outcome, f.name]),
        [
          ["retried", "AbortError"],
          ["dead", "AbortError"],
        ],
      );
      assert.equal(await scalar("SELECT count(*) FROM bad_input_runs WHERE msg_id = $1", [id]), 2, "run, timed out, retried once");
      assert.equal(worker.stats().busy, 0, "the slots came back");
    });
  });

  test("threads mode: timeoutMs stops even a handler that ignores ctx.signal (its thread is terminated); failure recorded, DLQ", async () => {
    const id = await bus.enqueue(hangIgnoresSignal, {});
    await withWorker({ executionMode: "threads", capacity: 2 }, async (worker) => {
      const [dead] = await deadLetters(1);
      assert.equal(dead!.reason, "retries_exhausted");
      assert.equal(dead!.error.name, "AbortError");
      assert.deepEqual(
        (await failures(id)).map((f) => f.outcome),
        ["dead"],
      );
      await waitFor(() => worker.stats().busy === 0, "the slot to come back");
    });
  });

  test("async mode: a handler that ignores ctx.signal cannot be cancelled; it holds its slot (VT kept extended) until stop(), which releases the message", async () => {
    // A promise cannot be cancelled from outside: timeoutMs aborts ctx.signal, and a
    // handler that ignores it keeps running. It is not run twice meanwhile (its VT is
    // extended), and stop() gives up on it after shutdownTimeoutMs and makes the message
    // visible again at once. Handlers that may hang on something that ignores signals
    // belong in threads mode, where the thread is terminated (previous test).
    const id = await bus.enqueue(hangIgnoresSignal, {});
    const released: Array<{ messageId: string; started: boolean }> = [];
    const off = bus.on("job:released", ({ messageId, started }) => void released.push({ messageId, started }));
    const worker = bus.worker({ queues: ["bad"], capacity: 2, pollIntervalMs: 100, visibilityTimeoutSec: 1, shutdownTimeoutMs: 200 });
    await worker.start();
    try {
      await waitFor(
        async () => (await scalar("SELECT count(*) FROM bad_input_runs WHERE msg_id = $1 AND job = 'hang_ignores_signal'", [id])) === 1,
        "the run to start",
      );
      // Its 300 ms timeout fired (the handler noted it), and its first VT (1 s from the claim) is over.
      await waitFor(
        async () =>
          (await scalar("SELECT count(*) FROM bad_input_runs WHERE msg_id = $1 AND job = 'hang_ignores_signal:aborted'", [id])) === 1 &&
          (await scalar("SELECT count(*) FROM pgmq.q_bad WHERE msg_id = $1 AND clock_timestamp() > last_read_at + interval '1.5 seconds'", [
            id,
          ])) === 1,
        "the timeout to fire and one VT to pass",
      );
      assert.equal(worker.stats().busy, 1, "still in its slot: the timeout could not stop it");
      assert.equal(
        await scalar("SELECT count(*) FROM bad_input_runs WHERE msg_id = $1 AND job = 'hang_ignores_signal'", [id]),
        1,
        "not handed out again while this worker lives",
      );
    } finally {
      await worker.stop();
      off();
    }
    assert.equal(
      await scalar("SELECT count(*) FROM pgmq.q_bad WHERE msg_id = $1 AND vt <= clock_timestamp()", [id]),
      1,
      "released at stop, visible again",
    );
    assert.deepEqual(released, [{ messageId: id, started: true }], "the run that started ends with a job:released event");
    await bus.queues.purgeQueue("bad");
  });
});

describe("bad values at enqueue are refused with a typed error, and nothing is enqueued", () => {
  test("circular and BigInt payloads: INVALID_PAYLOAD", async () => {
    const circular: Record<string, unknown> = { a: 1 };
    circular["self"] = circular;
    const loose = defineJob<unknown>({ name: "loose", queue: "bad", perform() {} });
    await assert.rejects(bus.enqueue(loose, circular), (error) =>
      assertPgbusError(error, "INVALID_PAYLOAD", "is not JSON-serialisable", /circular/i),
    );
    await assert.rejects(bus.enqueue(loose, { big: 10n }), (error) =>
      assertPgbusError(error, "INVALID_PAYLOAD", "is not JSON-serialisable", /BigInt/),
    );
    await assert.rejects(bus.enqueueMany(loose, [{ ok: 1 }, { big: 1n }]), (error) =>
      assertPgbusError(error, "INVALID_PAYLOAD", "message 1 for queue bad"),
    );
    assert.equal((await bus.queues.metrics("bad")).queueLength, 0, "not even the valid payload of the batch");
  });

  test("oversized payload: PAYLOAD_TOO_LARGE naming the size and maxPayloadBytes", async () => {
    const loose = defineJob<unknown>({ name: "loose_big", queue: "bad", perform() {} });
    await assert.rejects(bus.enqueue(loose, { blob: "x".repeat(2_000) }), (error) =>
      assertPgbusError(error, "PAYLOAD_TOO_LARGE", /is \d+ bytes of JSON, over the 1024-byte limit \(maxPayloadBytes\)/),
    );
    await assert.rejects(bus.queues.withClient(db.pool).send("bad", "x".repeat(5 * 1_048_576)), (error) =>
      assertPgbusError(error, "PAYLOAD_TOO_LARGE"),
    );
    assert.equal((await bus.queues.metrics("bad")).queueLength, 0);
  });
});

describe("bad configuration is refused, naming key, value and the valid values", () => {
  const URL = "postgres://app@127.0.0.1:5432/app";

  test("invalid config values: INVALID_CONFIG with key path, value and rule, one line per problem", () => {
    assert.throws(
      () =>
        resolveConfig(
          { databaseUrl: URL, workers: [{ queues: ["a"], capacity: -1 }], pollIntervalMs: "fast", ackMode: "forget", colour: "blue" },
          "pgbus.config.json",
        ),
      (error) => {
        assertPgbusError(
          error,
          "INVALID_CONFIG",
          "pgbus.config.json: workers.0.capacity: must be an integer from 1 to 1000, got -1",
          'pgbus.config.json: pollIntervalMs: must be an integer >= 10, got "fast"',
          'pgbus.config.json: ackMode: got "forget"; valid: archive, delete',
          'pgbus.config.json: colour: unknown key, got "blue"; valid: databaseUrl,',
        );
        assert.ok(error instanceof ValidationError);
        assert.equal(error.message.split("\n").length, 4, error.message);
        return true;
      },
    );
    assert.throws(
      () => resolveConfig({ databaseUrl: URL, restartBackoff: { baseMs: 0, resetAfter: 1 } }, "cfg"),
      (error) =>
        assertPgbusError(
          error,
          "INVALID_CONFIG",
          "cfg: restartBackoff.baseMs: must be an integer >= 10, got 0",
          "cfg: restartBackoff.resetAfter: unknown key (did you mean resetAfterMs?), got 1; valid: baseMs, maxMs, resetAfterMs",
        ),
    );
    assert.throws(
      () => resolveConfig({ databaseUrl: "mysql://nope" }, "cfg"),
      (error) => assertPgbusError(error, "INVALID_CONFIG", 'databaseUrl: must be a postgres:// or postgresql:// URL, got "mysql://nope"'),
    );
  });

  test("invalid queue DSL: INVALID_QUEUE_DSL naming the entry and the rule, from the API, the config and the environment", async () => {
    assert.throws(
      () => parseQueueDsl("critical: 5; mailers: lots"),
      (error) =>
        assertPgbusError(
          error,
          "INVALID_QUEUE_DSL",
          'invalid queue DSL entry "mailers: lots": capacity "lots" must be an integer from 1 to 1000',
        ),
    );
    assert.throws(
      () => parseQueueDsl("Bad-Name: 2"),
      (error) => assertPgbusError(error, "INVALID_QUEUE_DSL", 'invalid queue name "Bad-Name"'),
    );
    assert.throws(
      () => resolveConfig({ databaseUrl: URL, workers: "a: 1; a: 2" }, "cfg"),
      (error) => assertPgbusError(error, "INVALID_QUEUE_DSL", 'queue "a" is already in entry "a: 1"'),
    );
    await assert.rejects(loadConfig({ cwd: "/", env: { DATABASE_URL: URL, PGBUS_QUEUES: "x:" } }), (error) =>
      assertPgbusError(error, "INVALID_QUEUE_DSL", "PGBUS_QUEUES", '"x:"'),
    );
  });

  test("invalid execution mode: INVALID_EXECUTION_MODE listing async, threads, fiber, from config, environment, worker option and CLI flag", async () => {
    assert.throws(
      () => resolveConfig({ databaseUrl: URL, executionMode: "fibre" }, "cfg"),
      (error) => assertPgbusError(error, "INVALID_EXECUTION_MODE", 'executionMode: got "fibre"; valid: async, threads, fiber'),
    );
    await assert.rejects(loadConfig({ cwd: "/", env: { DATABASE_URL: URL, PGBUS_EXECUTION_MODE: "processes" } }), (error) =>
      assertPgbusError(
        error,
        "INVALID_EXECUTION_MODE",
        'PGBUS_EXECUTION_MODE: executionMode: got "processes"; valid: async, threads, fiber',
      ),
    );
    // A bus of its own, so a worker whose start failed is stopped and closed here.
    const throwaway = new Pgbus({ connectionString: db.url, jobs });
    const worker = throwaway.worker({ queues: ["bad"], executionMode: "green-threads" });
    await assert.rejects(worker.start(), (error) =>
      assertPgbusError(error, "INVALID_EXECUTION_MODE", 'invalid execution mode "green-threads": use one of async, threads, fiber'),
    );
    await throwaway.close().catch(() => {});

    const cli = await runCli(["start", "--config", FIXTURE_CONFIG, "--execution-mode", "turbo"], cliEnv(db.url));
    assert.equal(cli.code, 1, cli.stderr);
    assert.match(cli.stderr, /^pgbus: --execution-mode: executionMode: got "turbo"; valid: async, threads, fiber\n$/);
  });
});

describe("a worker whose start failed", () => {
  test("can be stopped, and the bus that built it still closes", async () => {
    const own = new Pgbus({ connectionString: db.url, jobs });
    const worker = own.worker({ queues: ["bad"], executionMode: "nope" });
    await assert.rejects(worker.start(), (error) => assertPgbusError(error, "INVALID_EXECUTION_MODE"));
    await worker.stop();
    await own.close();
  });
});

describe("a queue table dropped while a worker runs", () => {
  test("the worker logs the error, keeps running, still processes its other queues, and does not crash-loop", async () => {
    await bus.queues.createQueue("doomed");
    await withWorker({ queues: ["doomed", "bad_other"] }, async (worker) => {
      const before = await bus.enqueue(fine, {});
      await waitFor(
        async () => (await scalar("SELECT count(*) FROM bad_input_runs WHERE msg_id = $1", [before])) === 1,
        "a job before the drop",
      );
      const mark = logLines.length;
      await db.pool.query("DROP TABLE pgmq.q_doomed");
      const ids = await bus.enqueueMany(fine, [{}, {}, {}]);
      await waitFor(
        async () => (await scalar("SELECT count(*) FROM bad_input_runs WHERE msg_id = ANY($1::bigint[])", [ids])) === 3,
        "jobs of the other queue",
        5_000,
      );
      // The dropped queue is found by the next backstop poll (nothing notifies it).
      await waitFor(() => logLines.slice(mark).some((line) => line.level === "error"), "the failure to be logged", 5_000);
      const errors = logLines.slice(mark).filter((line) => line.level === "error");
      assert.ok(
        errors.some((line) => /q_doomed/.test(String(line.err))),
        `the log names the missing table: ${JSON.stringify(errors)}`,
      );
      assert.ok(errors.length <= 2, `logged once, not per poll: ${errors.length} lines`);
      assert.equal(worker.stats().processed >= 4, true);
    });
    await db.pool.query("DELETE FROM pgmq.meta WHERE queue_name = 'doomed'");
  });
});
