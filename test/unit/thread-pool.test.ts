import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import { afterEach, describe, it } from "node:test";
import { ThreadPool, type ThreadPoolOptions } from "../../src/pools/thread-pool.ts";
import { leaseExpiredOutcome } from "../../src/jobs/outcome.ts";
import { leaseClock } from "../../src/pools/lease.ts";
import { describePoolContract } from "./pools-contract.ts";
import { BROKEN_JOBS, NO_JOBS, POOL_JOBS, extraThreads, task } from "./pools-helpers.ts";

describePoolContract("threads");

describe("ThreadPool", () => {
  const pools: ThreadPool[] = [];
  const startPool = async (options: Partial<ThreadPoolOptions> = {}): Promise<ThreadPool> => {
    const pool = await ThreadPool.start({ capacity: 2, jobsModule: POOL_JOBS, ...options });
    pools.push(pool);
    return pool;
  };
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((pool) => pool.kill()));
    assert.equal(extraThreads(), 0, "every thread is gone once its pool is killed");
  });

  for (const [fixture, path, message] of [
    ["throws at import", BROKEN_JOBS, /broken-jobs fixture: fails at import/],
    ["exports no jobs", NO_JOBS, /exports no job definitions/],
    ["does not exist", `${POOL_JOBS}.missing.ts`, /could not load jobs module/],
  ] as const) {
    it(`fails to start, leaving no thread behind, when the jobs module ${fixture}`, async () => {
      await assert.rejects(ThreadPool.start({ capacity: 2, threads: 2, jobsModule: path }), (error: Error & { code?: string }) => {
        assert.equal(error.code, "JOBS_MODULE_LOAD_FAILED");
        assert.match(error.message, message);
        return true;
      });
      assert.equal(extraThreads(), 0);
    });
  }

  it("accepts the jobs module as a file URL", async () => {
    const pool = await startPool({ jobsModule: pathToFileURL(POOL_JOBS).href });
    assert.deepEqual(await pool.post(task("noop")), { ok: true });
  });

  it("keeps the main event loop free while a thread burns CPU", async () => {
    const pool = await startPool();
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 10);
    try {
      assert.deepEqual(await pool.post(task("cpu-burn", { ms: 300 })), { ok: true });
    } finally {
      clearInterval(ticker);
    }
    // A blocked loop would tick about once; a free one about 30 times.
    assert.ok(ticks >= 10, `main loop ticked ${ticks} times during a 300 ms burn`);
  });

  it("runs capacity async handlers at once even on fewer threads", async () => {
    const pool = await startPool({ capacity: 3, threads: 1 });
    // Each run waits until all three have started on the one thread: run one at a time, the
    // first would wait in vain and fail.
    const outcomes = await Promise.all([1, 2, 3].map(() => pool.post(task("barrier", { n: 3 }))));
    assert.deepEqual(outcomes, [{ ok: true }, { ok: true }, { ok: true }]);
  });

  it("terminates a run that ignores its signal when the post is aborted", async () => {
    const pool = await startPool();
    const controller = new AbortController();
    const running = pool.post(task("ignore-abort"), { signal: controller.signal });
    controller.abort(new Error("job timed out"));
    assert.deepEqual(await running, { ok: false, error: { name: "AbortError", message: "job timed out" } });
    assert.deepEqual(await pool.post(task("noop")), { ok: true });
  });

  it("kill terminates runs that ignore their signal", async () => {
    const pool = await startPool();
    const running = pool.post(task("ignore-abort"));
    await pool.kill();
    assert.deepEqual(await running, { ok: false, error: { name: "AbortError", message: "execution pool was killed" } });
  });

  it("reports a thread dying mid-run as a failure and keeps running jobs", async () => {
    const pool = await startPool({ capacity: 1, threads: 1 });
    const outcome = await pool.post(task("exit-thread"));
    assert.ok(!outcome.ok);
    assert.match(outcome.error.message, /exited/);
    assert.equal(pool.availableCapacity(), 1);
    assert.deepEqual(await pool.post(task("noop")), { ok: true });
  });

  it("checks a task's lease when it starts on its thread, not when it is posted: one that waited behind a busy handler past its lease is not run", async () => {
    const pool = await startPool({ capacity: 2, threads: 1 });
    const burning = pool.post(task("cpu-burn", { ms: 400 }));
    // Posted while its lease is still good; the thread takes it only once the burn is over.
    const waiting = pool.post(task("fail"), { leaseUntil: leaseClock() + 150 });
    assert.deepEqual(await waiting, leaseExpiredOutcome());
    assert.deepEqual(await burning, { ok: true });
  });

  it("a task waiting behind a busy handler runs if the worker extended the leases meanwhile", async () => {
    const pool = await startPool({ capacity: 2, threads: 1 });
    const burning = pool.post(task("cpu-burn", { ms: 400 }));
    const waiting = pool.post(task("noop"), { leaseUntil: leaseClock() + 150 });
    // The thread is busy: this lands in shared memory, where it reads it when the task starts.
    pool.extendLeases(leaseClock() + 60_000);
    assert.deepEqual(await waiting, { ok: true });
    assert.deepEqual(await burning, { ok: true });
  });

  it("a task waiting behind a busy handler past its startBy is not run, even though the leases were extended", async () => {
    const pool = await startPool({ capacity: 2, threads: 1 });
    const burning = pool.post(task("cpu-burn", { ms: 400 }));
    const waiting = pool.post(task("fail"), { leaseUntil: leaseClock() + 150, startBy: leaseClock() + 150 });
    pool.extendLeases(leaseClock() + 60_000);
    assert.deepEqual(await waiting, leaseExpiredOutcome());
    assert.deepEqual(await burning, { ok: true });
  });

  it("destroys its threads once idle after shutdown", async () => {
    const pool = await startPool();
    const running = pool.post(task("sleep", { ms: 30 }));
    pool.shutdown();
    assert.equal(await pool.waitForTermination(30_000), true);
    assert.deepEqual(await running, { ok: true });
    assert.equal(extraThreads(), 0);
  });
});
