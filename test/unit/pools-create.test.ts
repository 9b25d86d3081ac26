import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { JobRegistry } from "../../src/jobs/registry.ts";
import { AsyncPool } from "../../src/pools/async-pool.ts";
import { type CreateExecutionPoolOptions, createExecutionPool, normalizeExecutionMode } from "../../src/pools/create.ts";
import { ThreadPool } from "../../src/pools/thread-pool.ts";
import type { ExecutionPool } from "../../src/pools/types.ts";
import { noop } from "../fixtures/pool-jobs.ts";
import { BROKEN_JOBS, POOL_JOBS, task } from "./pools-helpers.ts";

/** An assert.rejects validator: a ValidationError with `code` whose message matches (or contains) `message`. */
function rejectsWith(code: string, message: RegExp | string) {
  return (error: Error & { code?: string }): boolean => {
    assert.equal(error.name, "ValidationError");
    assert.equal(error.code, code);
    if (typeof message === "string") assert.ok(error.message.includes(message), error.message);
    else assert.match(error.message, message);
    return true;
  };
}

describe("normalizeExecutionMode", () => {
  it("accepts async, threads and fiber (an alias of async)", () => {
    assert.equal(normalizeExecutionMode("async"), "async");
    assert.equal(normalizeExecutionMode("fiber"), "async");
    assert.equal(normalizeExecutionMode("threads"), "threads");
  });

  for (const [bad, shown] of [
    ["thread", '"thread"'],
    ["ASYNC", '"ASYNC"'],
    ["", '""'],
    [undefined, "undefined"],
    [42, "42"],
  ]) {
    it(`rejects ${shown}, naming it and the valid modes`, () => {
      assert.throws(
        () => normalizeExecutionMode(bad),
        (error: Error & { code?: string }) => {
          assert.equal(error.code, "INVALID_EXECUTION_MODE");
          assert.ok(error.message.includes(`mode ${shown}:`), error.message);
          assert.match(error.message, /async, threads, fiber/);
          return true;
        },
      );
    });
  }
});

describe("createExecutionPool", () => {
  const pools: ExecutionPool[] = [];
  const create = async (options: CreateExecutionPoolOptions): Promise<ExecutionPool> => {
    const pool = await createExecutionPool(options);
    pools.push(pool);
    return pool;
  };
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((pool) => pool.kill()));
  });
  const registry = new JobRegistry([noop]);

  it("builds an async pool from a registry, for async and fiber", async () => {
    for (const mode of ["async", "fiber"]) {
      const pool = await create({ mode, capacity: 3, registry });
      assert.ok(pool instanceof AsyncPool);
      assert.deepEqual(pool.metadata(), { mode: "async", capacity: 3, busy: 0 });
      assert.deepEqual(await pool.post(task("noop")), { ok: true });
    }
  });

  it("loads the registry from jobsModule when async mode gets no registry", async () => {
    const pool = await create({ mode: "async", capacity: 1, jobsModule: POOL_JOBS });
    assert.deepEqual(await pool.post(task("sleep", { ms: 1 })), { ok: true });
  });

  it("builds a thread pool from jobsModule", async () => {
    const pool = await create({ mode: "threads", capacity: 2, threads: 1, jobsModule: POOL_JOBS });
    assert.ok(pool instanceof ThreadPool);
    assert.deepEqual(pool.metadata(), { mode: "threads", capacity: 2, busy: 0 });
    assert.deepEqual(await pool.post(task("noop")), { ok: true });
  });

  it("rejects an unknown mode with INVALID_EXECUTION_MODE", async () => {
    await assert.rejects(create({ mode: "workers", capacity: 1, registry }), (error: Error & { code?: string }) => {
      assert.equal(error.code, "INVALID_EXECUTION_MODE");
      assert.match(error.message, /"workers".*async, threads, fiber/);
      return true;
    });
  });

  for (const [capacity, shown] of [
    [0, "0"],
    [-1, "-1"],
    [1.5, "1.5"],
    [1001, "1001"],
    [Number.NaN, "NaN"],
    ["2", '"2"'],
  ] as const) {
    it(`rejects capacity ${shown} with INVALID_OPTION, naming it`, async () => {
      await assert.rejects(
        create({ mode: "async", capacity: capacity as number, registry }),
        rejectsWith("INVALID_OPTION", `invalid pool capacity ${shown}: use an integer from 1 to 1000`),
      );
    });
  }

  it("accepts the capacity bounds 1 and 1000", async () => {
    assert.equal((await create({ mode: "async", capacity: 1, registry })).capacity, 1);
    assert.equal((await create({ mode: "async", capacity: 1000, registry })).capacity, 1000);
  });

  it("says what async mode is missing without registry or jobsModule", async () => {
    await assert.rejects(create({ mode: "async", capacity: 1 }), rejectsWith("INVALID_OPTION", /registry.*jobsModule/));
  });

  it("says what threads mode is missing without jobsModule", async () => {
    await assert.rejects(
      create({ mode: "threads", capacity: 1, registry }),
      rejectsWith("INVALID_OPTION", /threads mode needs jobsModule/),
    );
  });

  it("rejects a threads count that is not a positive integer", async () => {
    await assert.rejects(
      create({ mode: "threads", capacity: 2, threads: 0, jobsModule: POOL_JOBS }),
      rejectsWith("INVALID_OPTION", /threads 0/),
    );
  });

  it("rejects a blockedLoopThresholdMs that is not a positive number", async () => {
    await assert.rejects(
      create({ mode: "async", capacity: 1, registry, blockedLoopThresholdMs: 0 }),
      rejectsWith("INVALID_OPTION", "blockedLoopThresholdMs 0"),
    );
  });

  it("fails with JOBS_MODULE_LOAD_FAILED when async mode cannot load jobsModule", async () => {
    await assert.rejects(create({ mode: "async", capacity: 1, jobsModule: BROKEN_JOBS }), (error: Error & { code?: string }) => {
      assert.equal(error.code, "JOBS_MODULE_LOAD_FAILED");
      assert.match(error.message, /broken-jobs fixture: fails at import/);
      return true;
    });
  });
});
