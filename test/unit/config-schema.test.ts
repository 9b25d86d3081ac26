import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type PgbusErrorCode, ValidationError } from "../../src/errors.ts";
import { ackModeFor, checkConfigValues, resolveConfig } from "../../src/config/schema.ts";
import { fifoFor, queuesToCreate } from "../../src/config/queue-settings.ts";

const SOURCE = "pgbus.config.json";
const URL = "postgres://app@localhost:5432/app";

function configError(input: unknown, code: PgbusErrorCode, ...lines: string[]): ValidationError {
  let caught: unknown;
  assert.throws(
    () => resolveConfig(input, SOURCE),
    (error: unknown) => {
      caught = error;
      return true;
    },
  );
  assert.ok(caught instanceof ValidationError, "a ValidationError");
  assert.equal(caught.code, code, caught.message);
  for (const line of lines) assert.ok(caught.message.includes(line), `message:\n${caught.message}\nhas: ${line}`);
  return caught;
}

describe("resolveConfig: defaults", () => {
  it("fills every default", () => {
    assert.deepEqual(resolveConfig({ databaseUrl: URL }, SOURCE), {
      databaseUrl: URL,
      executionMode: "async",
      workers: [{ queues: ["*"], capacity: 10, executionMode: "async", pollIntervalMs: 1000, visibilityTimeoutSec: 30 }],
      visibilityTimeoutSec: 30,
      pollIntervalMs: 1000,
      ackMode: "archive",
      queues: {},
      shutdownTimeoutMs: 25_000,
      heartbeatIntervalMs: 5000,
      staleProcessAfterMs: 30_000,
      maintenance: {
        intervalMs: 60_000,
        archiveRetentionHours: 168,
        failedJobRetentionHours: 720,
        processedEventTtlHours: 168,
      },
      consumers: { capacity: 10 },
      outbox: { batchSize: 500, pollIntervalMs: 1000 },
      recurring: [],
      maxPayloadBytes: 4 * 1_048_576,
      logLevel: "info",
      preparedStatements: true,
    });
  });

  it("fills the maintenance keys a partial maintenance leaves out", () => {
    const config = resolveConfig({ databaseUrl: URL, maintenance: { intervalMs: 5000 } }, SOURCE);
    assert.deepEqual(config.maintenance, {
      intervalMs: 5000,
      archiveRetentionHours: 168,
      failedJobRetentionHours: 720,
      processedEventTtlHours: 168,
    });
  });

  it("keeps optional recycling limits and jobsModule only when set", () => {
    const plain = resolveConfig({ databaseUrl: URL }, SOURCE);
    assert.equal("maxJobsPerWorker" in plain, false);
    const set = resolveConfig({ databaseUrl: URL, maxJobsPerWorker: 500, maxMemoryMb: 512, jobsModule: "./jobs.js" }, SOURCE);
    assert.equal(set.maxJobsPerWorker, 500);
    assert.equal(set.maxMemoryMb, 512);
    assert.equal(set.jobsModule, "./jobs.js");
  });

  it("fills each queue's ackMode from the global one", () => {
    const config = resolveConfig({ databaseUrl: URL, ackMode: "delete", queues: { mailers: {}, audit: { ackMode: "archive" } } }, SOURCE);
    assert.deepEqual(config.queues, { mailers: { ackMode: "delete", fifo: false }, audit: { ackMode: "archive", fifo: false } });
    assert.equal(ackModeFor(config, "audit"), "archive");
    assert.equal(ackModeFor(config, "other"), "delete");
  });
});

describe("resolveConfig: queue kinds and FIFO queues", () => {
  it("takes fifo, partitioned and unlogged per queue; pgbus start creates the partitioned and unlogged ones", () => {
    const config = resolveConfig(
      {
        databaseUrl: URL,
        queues: {
          orders: { fifo: true },
          audit: { partitioned: { interval: "1 day", retention: "7 days" } },
          ticks: { partitioned: { interval: 100_000, retention: 1_000_000 }, fifo: true },
          clicks: { unlogged: true, ackMode: "delete" },
        },
      },
      SOURCE,
    );
    assert.deepEqual(config.queues, {
      orders: { ackMode: "archive", fifo: true },
      audit: { ackMode: "archive", fifo: false, partitioned: { interval: "1 day", retention: "7 days" } },
      ticks: { ackMode: "archive", fifo: true, partitioned: { interval: "100000", retention: "1000000" } },
      clicks: { ackMode: "delete", fifo: false, unlogged: true },
    });
    assert.deepEqual(
      [fifoFor(config.queues, "orders"), fifoFor(config.queues, "ticks"), fifoFor(config.queues, "audit"), fifoFor(config.queues, "other")],
      [true, true, false, false],
    );
    assert.deepEqual(queuesToCreate(config.queues), [
      ["audit", { partitioned: { interval: "1 day", retention: "7 days" } }],
      ["ticks", { partitioned: { interval: "100000", retention: "1000000" } }],
      ["clicks", { unlogged: true }],
    ]);
  });

  it("refuses bad kinds with the value and what is valid", () => {
    const bad: Array<[unknown, string]> = [
      [
        { partitioned: { interval: "1 fortnight", retention: "2 days" } },
        'queues.a.partitioned: partitioned.interval must be a positive integer (msg ids) or a time interval such as "1 day", got "1 fortnight"',
      ],
      [{ partitioned: { interval: 100, retention: 0 } }, "queues.a.partitioned: partitioned.retention must be a positive integer"],
      [
        { partitioned: { interval: 100, retention: "2 days" } },
        'queues.a.partitioned: partitioned.interval and partitioned.retention must be of one kind: both msg id counts or both time intervals, got 100 and "2 days"',
      ],
      [{ partitioned: "daily" }, 'queues.a.partitioned: partitioned must be { interval, retention }, got "daily"'],
      [
        { partitioned: { interval: 100, retention: 1000 }, unlogged: true },
        "queues.a.unlogged: a queue is either unlogged or partitioned, not both; remove one of them, got true",
      ],
      [{ fifo: "yes" }, 'queues.a.fifo: must be true or false, got "yes"'],
      [{ unlogged: 1 }, "queues.a.unlogged: must be true or false, got 1"],
      [
        { fifo: true, partition: {} },
        "queues.a.partition: unknown key (did you mean partitioned?), got {}; valid: ackMode, fifo, partitioned, unlogged, circuitBreaker, rateLimit",
      ],
    ];
    for (const [entry, line] of bad) configError({ databaseUrl: URL, queues: { a: entry } }, "INVALID_CONFIG", line);
  });
});

describe("resolveConfig: execution modes and workers", () => {
  it("resolves each worker's mode: its own, else the global one", () => {
    const config = resolveConfig(
      {
        databaseUrl: URL,
        executionMode: "threads",
        pollIntervalMs: 500,
        workers: [{ queues: ["io"], capacity: 50, executionMode: "async", pollIntervalMs: 50 }, { queues: ["cpu"] }],
      },
      SOURCE,
    );
    assert.equal(config.executionMode, "threads");
    assert.deepEqual(config.workers, [
      { queues: ["io"], capacity: 50, executionMode: "async", pollIntervalMs: 50, visibilityTimeoutSec: 30 },
      { queues: ["cpu"], capacity: 10, executionMode: "threads", pollIntervalMs: 500, visibilityTimeoutSec: 30 },
    ]);
  });

  it("normalises fiber to async, globally and per worker", () => {
    const config = resolveConfig(
      { databaseUrl: URL, executionMode: "fiber", workers: [{ queues: ["a"], executionMode: "fiber" }, { queues: ["b"] }] },
      SOURCE,
    );
    assert.equal(config.executionMode, "async");
    assert.deepEqual(
      config.workers.map((w) => w.executionMode),
      ["async", "async"],
    );
  });

  it("expands a top-level workers DSL into one worker per entry", () => {
    const config = resolveConfig({ databaseUrl: URL, executionMode: "threads", workers: "critical: 5; *: 2" }, SOURCE);
    assert.deepEqual(
      config.workers.map((w) => [w.queues, w.capacity, w.executionMode]),
      [
        [["critical"], 5, "threads"],
        [["*"], 2, "threads"],
      ],
    );
  });

  it("expands a worker's queues DSL, sharing the worker's settings and capacity", () => {
    const config = resolveConfig(
      { databaseUrl: URL, workers: [{ queues: "critical: 5; default, mailers", capacity: 3, executionMode: "threads" }] },
      SOURCE,
    );
    assert.deepEqual(
      config.workers.map((w) => [w.queues, w.capacity, w.executionMode]),
      [
        [["critical"], 5, "threads"],
        [["default", "mailers"], 3, "threads"],
      ],
    );
  });
});

describe("resolveConfig: errors", () => {
  it("names the key path, the bad value and the rule", () => {
    const error = configError(
      { databaseUrl: URL, workers: [{ queues: ["a"], capacity: 0 }] },
      "INVALID_CONFIG",
      "pgbus.config.json: workers.0.capacity: must be an integer from 1 to 1000, got 0",
    );
    assert.equal(error.message, "pgbus.config.json: workers.0.capacity: must be an integer from 1 to 1000, got 0");
  });

  it("rejects an unknown execution mode with INVALID_EXECUTION_MODE, listing the valid modes", () => {
    configError(
      { databaseUrl: URL, executionMode: "nope" },
      "INVALID_EXECUTION_MODE",
      'pgbus.config.json: executionMode: got "nope"; valid: async, threads, fiber',
    );
    configError(
      { databaseUrl: URL, workers: [{ queues: ["a"], executionMode: "green" }] },
      "INVALID_EXECUTION_MODE",
      'workers.0.executionMode: got "green"; valid: async, threads, fiber',
    );
  });

  it("lists the valid values of every enum", () => {
    configError({ databaseUrl: URL, logLevel: "verbose" }, "INVALID_CONFIG", 'logLevel: got "verbose"; valid: debug, info, warn, error');
    configError({ databaseUrl: URL, ackMode: "drop" }, "INVALID_CONFIG", 'ackMode: got "drop"; valid: archive, delete');
    configError({ databaseUrl: URL, queues: { a: { ackMode: 1 } } }, "INVALID_CONFIG", "queues.a.ackMode: got 1; valid: archive, delete");
  });

  it("takes a queue's circuit breaker (true: the defaults) and checks it by the worker's rules", () => {
    const config = resolveConfig(
      { databaseUrl: URL, queues: { a: { circuitBreaker: true }, b: { circuitBreaker: { threshold: 3, baseMs: 100 } }, c: {} } },
      SOURCE,
    );
    assert.deepEqual(config.queues["a"]?.circuitBreaker, { threshold: 5, baseMs: 30_000, maxMs: 600_000 });
    assert.deepEqual(config.queues["b"]?.circuitBreaker, { threshold: 3, baseMs: 100, maxMs: 600_000 });
    assert.equal(config.queues["c"]?.circuitBreaker, undefined);
    configError(
      { databaseUrl: URL, queues: { a: { circuitBreaker: { threshold: 0 } } } },
      "INVALID_CONFIG",
      "queues.a.circuitBreaker: threshold must be an integer from 1 to 2147483647, got 0",
    );
    configError(
      { databaseUrl: URL, queues: { a: { circuitBreaker: { baseMs: 500, maxMs: 100 } } } },
      "INVALID_CONFIG",
      "queues.a.circuitBreaker: maxMs must be >= baseMs (500), got 100",
    );
  });

  it("rejects unknown keys at every level, naming them and the valid keys", () => {
    configError(
      { databaseUrl: URL, pollIntervallMs: 100 },
      "INVALID_CONFIG",
      "pgbus.config.json: pollIntervallMs: unknown key (did you mean pollIntervalMs?), got 100; valid: databaseUrl, jobsModule",
    );
    configError(
      { databaseUrl: URL, workers: [{ queues: ["a"], capcity: 4 }] },
      "INVALID_CONFIG",
      "workers.0.capcity: unknown key (did you mean capacity?), got 4; valid: queues, capacity, executionMode",
    );
    configError(
      { databaseUrl: URL, maintenance: { interval: 1 } },
      "INVALID_CONFIG",
      "maintenance.interval: unknown key (did you mean intervalMs?), got 1; valid: intervalMs,",
    );
    configError(
      { databaseUrl: URL, queues: { a: { ack: "delete" } } },
      "INVALID_CONFIG",
      'queues.a.ack: unknown key, got "delete"; valid: ackMode, fifo, partitioned, unlogged, circuitBreaker, rateLimit',
    );
  });

  it("suggests the closest valid key for a misspelt one, and none for an unrelated one", () => {
    configError(
      { databaseUrl: URL, jobModule: "./jobs.js" },
      "INVALID_CONFIG",
      'pgbus.config.json: jobModule: unknown key (did you mean jobsModule?), got "./jobs.js"; valid: databaseUrl, jobsModule',
    );
    const error = configError({ databaseUrl: URL, frobnicate: 1 }, "INVALID_CONFIG", "frobnicate: unknown key, got 1");
    assert.doesNotMatch(error.message, /did you mean/);
  });

  it("asks for DATABASE_URL or databaseUrl when the URL is missing", () => {
    configError({}, "INVALID_CONFIG", "pgbus.config.json: databaseUrl: missing; set DATABASE_URL or databaseUrl in pgbus.config");
  });

  it("rejects a non-postgres URL without showing its password", () => {
    const error = configError(
      { databaseUrl: "mysql://app:hunter2@db/app" },
      "INVALID_CONFIG",
      'databaseUrl: must be a postgres:// or postgresql:// URL, got "mysql://app:***@db/app"',
    );
    assert.ok(!error.message.includes("hunter2"));
  });

  it("checks queue names in worker lists and queue settings", () => {
    configError(
      { databaseUrl: URL, workers: [{ queues: ["ok", "Not-OK"] }] },
      "INVALID_CONFIG",
      'workers.0.queues.1: must be a queue name (1-47 characters of a-z, 0-9 and "_") or "*" alone, got "Not-OK"',
    );
    configError(
      { databaseUrl: URL, workers: [{ queues: ["*", "a"] }] },
      "INVALID_CONFIG",
      'workers.0.queues.0: "*" must be the only entry',
    );
    configError(
      { databaseUrl: URL, workers: [{ queues: ["a", "a"] }] },
      "INVALID_CONFIG",
      'workers.0.queues.1: is named twice in this list, got "a"',
    );
    configError(
      { databaseUrl: URL, workers: [{ queues: [] }] },
      "INVALID_CONFIG",
      'workers.0.queues: must name at least one queue, or ["*"] for every queue, got []',
    );
    configError({ databaseUrl: URL, workers: [{ capacity: 2 }] }, "INVALID_CONFIG", "workers.0.queues: required: a list of queue names");
    configError(
      { databaseUrl: URL, queues: { "Bad-Name": {} } },
      "INVALID_CONFIG",
      'queues.Bad-Name: key must be a queue name (1-47 characters of a-z, 0-9 and "_"), got "Bad-Name"',
    );
  });

  it("rejects wrong types with the rule and the value", () => {
    configError({ databaseUrl: URL, workers: {} }, "INVALID_CONFIG", "workers: must be a list of workers or a queue DSL string");
    configError({ databaseUrl: URL, workers: [] }, "INVALID_CONFIG", "workers: must list at least one worker, got []");
    configError({ databaseUrl: URL, maintenance: 5 }, "INVALID_CONFIG", "maintenance: must be an object with keys intervalMs");
    configError({ databaseUrl: URL, shutdownTimeoutMs: "25s" }, "INVALID_CONFIG", 'shutdownTimeoutMs: must be an integer >= 0, got "25s"');
    configError({ databaseUrl: URL, pollIntervalMs: 5 }, "INVALID_CONFIG", "pollIntervalMs: must be an integer >= 10, got 5");
    configError({ databaseUrl: URL, maxMemoryMb: 8 }, "INVALID_CONFIG", "maxMemoryMb: must be an integer >= 16, got 8");
    configError(
      { databaseUrl: URL, visibilityTimeoutSec: 1.5 },
      "INVALID_CONFIG",
      "visibilityTimeoutSec: must be an integer from 1 to 43200, got 1.5",
    );
    configError([], "INVALID_CONFIG", "pgbus.config.json: must be an object with keys databaseUrl");
  });

  it("reports queue DSL errors with INVALID_QUEUE_DSL, naming the entry", () => {
    configError(
      { databaseUrl: URL, workers: "a: 0" },
      "INVALID_QUEUE_DSL",
      'workers: invalid queue DSL entry "a: 0": capacity "0" must be an integer from 1 to 1000',
    );
    configError(
      { databaseUrl: URL, workers: [{ queues: "a; *; *" }] },
      "INVALID_QUEUE_DSL",
      'workers.0.queues: invalid queue DSL entry "*"',
    );
  });

  it("requires staleProcessAfterMs to exceed twice heartbeatIntervalMs", () => {
    configError(
      { databaseUrl: URL, heartbeatIntervalMs: 20_000 },
      "INVALID_CONFIG",
      "staleProcessAfterMs: must exceed twice heartbeatIntervalMs (20000)",
      "valid: an integer > 40000",
      "got 30000",
    );
    assert.equal(
      resolveConfig({ databaseUrl: URL, heartbeatIntervalMs: 20_000, staleProcessAfterMs: 40_001 }, SOURCE).staleProcessAfterMs,
      40_001,
    );
  });

  it("lists every problem in one error, one per line, with INVALID_CONFIG when codes differ", () => {
    const error = configError(
      { executionMode: "nope", logLevel: "loud" },
      "INVALID_CONFIG",
      "databaseUrl: missing",
      'executionMode: got "nope"',
      'logLevel: got "loud"',
    );
    assert.equal(error.message.split("\n").length, 3);
    assert.ok(error.message.split("\n").every((line) => line.startsWith("pgbus.config.json: ")));
  });
});

describe("checkConfigValues", () => {
  it("checks only the keys given, so a missing databaseUrl is not reported", () => {
    assert.deepEqual(checkConfigValues({ executionMode: "threads" }, "PGBUS_EXECUTION_MODE"), []);
    const problems = checkConfigValues({ executionMode: "nope" }, "PGBUS_EXECUTION_MODE");
    assert.deepEqual(
      problems.map((p) => [p.code, p.line]),
      [["INVALID_EXECUTION_MODE", 'PGBUS_EXECUTION_MODE: executionMode: got "nope"; valid: async, threads, fiber']],
    );
  });
});

describe("renamed keys", () => {
  it("`dispatcher` is still accepted as the old name of `maintenance`", () => {
    const config = resolveConfig({ databaseUrl: "postgres://localhost/x", dispatcher: { intervalMs: 5_000 } }, "test");
    assert.equal(config.maintenance.intervalMs, 5_000);
  });

  it("giving both names is an error rather than a silent choice", () => {
    assert.throws(
      () => resolveConfig({ databaseUrl: "postgres://localhost/x", dispatcher: {}, maintenance: {} }, "test"),
      (error: unknown) => error instanceof ValidationError && /dispatcher/.test(error.message),
    );
  });
});

describe("resolveConfig: health", () => {
  it("takes a port, with the host defaulting to loopback, and refuses a port out of range", () => {
    assert.deepEqual(resolveConfig({ databaseUrl: URL, health: { port: 9000 } }, SOURCE).health, { port: 9000, host: "127.0.0.1" });
    assert.equal(resolveConfig({ databaseUrl: URL }, SOURCE).health, undefined);
    configError({ databaseUrl: URL, health: { port: 70_000 } }, "INVALID_CONFIG", "health.port");
    configError({ databaseUrl: URL, health: { port: 9000, path: "/x" } }, "INVALID_CONFIG", "health");
  });
});
