import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolveConfig } from "../../src/config/schema.ts";
import { ValidationError } from "../../src/errors.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { limitKey } from "../../src/jobs/limits.ts";

const perform = (): void => {};

function rejects(options: Record<string, unknown>, ...parts: string[]): void {
  assert.throws(
    () => defineJob({ name: "limited", perform, ...options } as Parameters<typeof defineJob>[0]),
    (error: unknown) => {
      assert.ok(error instanceof ValidationError, "a ValidationError");
      assert.equal(error.code, "INVALID_OPTION");
      for (const part of parts) assert.ok(error.message.includes(part), `message: ${error.message}\nhas: ${part}`);
      return true;
    },
  );
}

describe("defineJob: concurrency", () => {
  it("resolves the defaults: no key, onLimit wait", () => {
    const job = defineJob({ name: "limited", perform, concurrency: { limit: 3 } });
    assert.deepEqual({ ...job.concurrency }, { limit: 3, key: undefined, onLimit: "wait" });
  });

  it("rejects a limit that is not an integer >= 1, naming the value", () => {
    rejects({ concurrency: { limit: 0 } }, "job limited: concurrency: limit must be an integer >= 1, got 0");
    rejects({ concurrency: { limit: 1.5 } }, "limit must be an integer >= 1, got 1.5");
    rejects({ concurrency: { limit: "2" } }, 'limit must be an integer >= 1, got "2"');
    rejects({ concurrency: {} }, "limit must be an integer >= 1, got undefined");
  });

  it("rejects an onLimit other than wait or discard, a key that is not a function, and a non-object", () => {
    rejects({ concurrency: { limit: 1, onLimit: "queue" } }, 'onLimit must be one of wait, discard, got "queue"');
    rejects({ concurrency: { limit: 1, key: "tenant" } }, 'key must be a function of the payload returning a string, got "tenant"');
    rejects({ concurrency: 2 }, "job limited: concurrency must be an object { limit, key?, onLimit? }, got 2");
  });
});

describe("defineJob: rateLimit", () => {
  it("resolves limit, intervalMs and key", () => {
    const key = (p: { t: string }): string => p.t;
    const job = defineJob<{ t: string }>({ name: "limited", perform, rateLimit: { limit: 50, intervalMs: 1_000, key } });
    assert.deepEqual({ ...job.rateLimit }, { limit: 50, intervalMs: 1_000, key });
  });

  it("rejects a zero, negative or fractional limit or intervalMs, naming the value", () => {
    rejects({ rateLimit: { limit: 0, intervalMs: 1_000 } }, "job limited: rateLimit: limit must be an integer >= 1, got 0");
    rejects({ rateLimit: { limit: 5, intervalMs: 0 } }, "intervalMs must be an integer >= 1, got 0");
    rejects({ rateLimit: { limit: 5, intervalMs: -1_000 } }, "intervalMs must be an integer >= 1, got -1000");
    rejects({ rateLimit: { limit: 5, intervalMs: 0.5 } }, "intervalMs must be an integer >= 1, got 0.5");
    rejects({ rateLimit: { limit: 5 } }, "intervalMs must be an integer >= 1, got undefined");
  });
});

describe("limitKey", () => {
  it("is the job's name, then the key function's result", () => {
    assert.equal(limitKey("sync", "concurrency", undefined, {}), "sync");
    assert.equal(
      limitKey("sync", "concurrency", (p) => (p as { t: string }).t, { t: "acme" }),
      "sync:acme",
    );
  });

  it("turns a throwing key function, or one that returns no non-empty string, into an invalid_limit_key failure", () => {
    const thrown = limitKey(
      "sync",
      "rateLimit",
      () => {
        throw new Error("no tenant");
      },
      {},
    );
    assert.deepEqual(thrown, {
      ok: false,
      permanent: "invalid_limit_key",
      error: { name: "InvalidLimitKeyError", message: "the rateLimit key function of job sync threw: no tenant" },
    });
    for (const [value, shown] of [
      [7, "7"],
      ["", '""'],
      [undefined, "undefined"],
      [null, "null"],
    ] as const) {
      const failure = limitKey("sync", "concurrency", () => value as unknown as string, {});
      assert.equal(typeof failure, "object");
      assert.equal(
        (failure as { error: { message: string } }).error.message,
        `the concurrency key function of job sync must return a non-empty string, returned ${shown}`,
      );
    }
  });
});

describe("config: a queue's rateLimit", () => {
  const URL = "postgres://app@localhost:5432/app";

  it("is resolved with the queue's ack mode", () => {
    const config = resolveConfig(
      { databaseUrl: URL, queues: { api: { rateLimit: { limit: 50, intervalMs: 1_000 } } } },
      "pgbus.config.json",
    );
    assert.deepEqual(config.queues, { api: { ackMode: "archive", fifo: false, rateLimit: { limit: 50, intervalMs: 1_000 } } });
  });

  it("rejects a zero limit, a negative interval and unknown keys, naming the value", () => {
    for (const [rateLimit, expected] of [
      [{ limit: 0, intervalMs: 1_000 }, "queues.api.rateLimit.limit: must be an integer >= 1, got 0"],
      [{ limit: 5, intervalMs: -1 }, "queues.api.rateLimit.intervalMs: must be an integer >= 1, got -1"],
      [{ limit: 5, intervalMs: 1_000, key: "x" }, "queues.api.rateLimit.key: unknown key"],
    ] as const) {
      assert.throws(
        () => resolveConfig({ databaseUrl: URL, queues: { api: { rateLimit } } }, "pgbus.config.json"),
        (error: unknown) => error instanceof ValidationError && error.message.includes(expected),
        expected,
      );
    }
  });
});
