/**
 * The ExecutionPool contract, run against each mode by async-pool.test.ts and
 * thread-pool.test.ts. Both pools are built through createExecutionPool from the same
 * fixture module, so a behaviour that differs between modes fails here.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { type CreateExecutionPoolOptions, createExecutionPool } from "../../src/pools/create.ts";
import type { ExecutionMode, ExecutionPool, JobTask } from "../../src/pools/types.ts";
import { leaseExpiredOutcome } from "../../src/jobs/outcome.ts";
import { leaseClock } from "../../src/pools/lease.ts";
import { POOL_JOBS, capturingLogger, extraThreads, task } from "./pools-helpers.ts";

const KILLED = { name: "AbortError", message: "execution pool was killed" };

export function describePoolContract(mode: ExecutionMode): void {
  describe(`ExecutionPool contract (${mode})`, () => {
    const pools: ExecutionPool[] = [];
    const makePool = async (options: Partial<CreateExecutionPoolOptions> = {}): Promise<ExecutionPool> => {
      const pool = await createExecutionPool({ mode, capacity: 2, jobsModule: POOL_JOBS, ...options });
      pools.push(pool);
      return pool;
    };
    afterEach(async () => {
      await Promise.all(pools.splice(0).map((pool) => pool.kill()));
      assert.equal(extraThreads(), 0, "no thread outlives its killed pool");
    });

    it("runs a task and resolves ok", async () => {
      const pool = await makePool();
      assert.equal(pool.mode, mode);
      assert.deepEqual(await pool.post(task("noop")), { ok: true });
      assert.deepEqual(await pool.post(task("sleep", { ms: 5 })), { ok: true });
      assert.deepEqual(pool.metadata(), { mode, capacity: 2, busy: 0 });
    });

    it("describes whatever a handler throws or rejects with", async () => {
      const pool = await makePool();
      const expected: Array<[string, string, string]> = [
        ["fail", "Error", "fail fixture: handler failed on purpose"],
        ["throw-string", "NonError", "fail fixture: a plain string"],
        ["throw-undefined", "NonError", "handler threw undefined"],
        ["reject-nothing", "NonError", "handler threw undefined"],
      ];
      for (const [job, name, message] of expected) {
        const outcome = await pool.post(task(job));
        assert.equal(outcome.ok, false, job);
        assert.ok(!outcome.ok);
        assert.equal(outcome.error.name, name, job);
        assert.equal(outcome.error.message, message, job);
        assert.equal(outcome.permanent, undefined, `${job} is retryable`);
      }
    });

    it("abortRun aborts the ctx.signal of the named run only, without a thread of its own; the others run on", async () => {
      const pool = await makePool({ capacity: 4, threads: 1 });
      const target = task("await-abort");
      const bystander = task("sleep", { ms: 300 });
      const runs = [pool.post(target), pool.post(bystander)];
      // Named by queue and id: another queue's message with the same id is not touched.
      pool.abortRun({ queue: "elsewhere", messageId: target.messageId }, new Error("wrong queue"));
      pool.abortRun({ queue: target.queue, messageId: target.messageId }, new Error("cancelled on purpose"));
      const [aborted, other] = await Promise.all(runs);
      assert.ok(!aborted!.ok);
      assert.equal(aborted!.error.name, "AbortError");
      assert.equal(aborted!.error.message, "cancelled on purpose");
      assert.deepEqual(other, { ok: true });
      pool.abortRun({ queue: "default", messageId: "no-such-run" }, new Error("nothing runs it")); // a no-op
      assert.deepEqual(await pool.post(task("noop")), { ok: true }, "the pool still runs tasks on the same thread");
    });

    it("reports an unknown job as a permanent failure", async () => {
      const pool = await makePool();
      const outcome = await pool.post(task("no-such-job"));
      assert.ok(!outcome.ok);
      assert.equal(outcome.permanent, "unknown_job");
      assert.equal(outcome.error.name, "UnknownJobError");
      assert.match(outcome.error.message, /"no-such-job"/);
    });

    it("counts busy slots while runs are in flight and frees them after", async () => {
      const pool = await makePool();
      assert.equal(pool.availableCapacity(), 2);
      assert.equal(pool.isIdle(), true);
      const first = new AbortController();
      const second = new AbortController();
      const firstRun = pool.post(task("await-abort"), { signal: first.signal });
      assert.equal(pool.availableCapacity(), 1);
      assert.equal(pool.isIdle(), false);
      assert.deepEqual(pool.metadata(), { mode, capacity: 2, busy: 1 });
      const secondRun = pool.post(task("await-abort"), { signal: second.signal });
      assert.equal(pool.availableCapacity(), 0);

      assert.throws(() => pool.post(task("noop")), { name: "PoolFullError", code: "POOL_FULL" });
      assert.equal(pool.metadata().busy, 2, "a refused post takes no slot");

      first.abort(new Error("stop first"));
      assert.deepEqual(await firstRun, { ok: false, error: { name: "AbortError", message: "stop first" } });
      assert.equal(pool.availableCapacity(), 1);
      second.abort(new Error("stop second"));
      await secondRun;
      assert.equal(pool.isIdle(), true);
      assert.deepEqual(pool.metadata(), { mode, capacity: 2, busy: 0 });
    });

    it("refuses posts after shutdown with PoolClosedError", async () => {
      const pool = await makePool();
      pool.shutdown();
      assert.throws(() => pool.post(task("noop")), { name: "PoolClosedError", code: "POOL_CLOSED" });
      assert.equal(pool.availableCapacity(), 0, "nothing may be claimed for a closed pool");
      assert.equal(await pool.waitForTermination(30_000), true);
    });

    it("restores capacity after failures", async () => {
      const pool = await makePool({ capacity: 1 });
      for (const job of ["fail", "throw-string", "reject-nothing", "no-such-job"]) {
        assert.equal((await pool.post(task(job))).ok, false);
        assert.equal(pool.availableCapacity(), 1, job);
      }
      assert.deepEqual(await pool.post(task("noop")), { ok: true });
    });

    it("restores capacity when post's own path throws, and resolves a failure", async () => {
      const pool = await makePool({ capacity: 1 });
      // Async mode reads the job name while starting the run; threads mode clones the task.
      const hostile = Object.defineProperty({ ...task("noop") }, "job", {
        enumerable: true,
        get: () => {
          throw new Error("job getter exploded");
        },
      }) as JobTask;
      const outcome = await pool.post(hostile);
      assert.ok(!outcome.ok);
      assert.match(outcome.error.message, /job getter exploded/);
      assert.equal(pool.availableCapacity(), 1);
      assert.deepEqual(await pool.post(task("noop")), { ok: true });
    });

    it("calls onStateChange after every completion, with the slot already free", async () => {
      const seen: number[] = [];
      const pool: ExecutionPool = await makePool({ onStateChange: () => seen.push(pool.availableCapacity()) });
      await Promise.all([pool.post(task("noop")), pool.post(task("fail"))]);
      await pool.post(task("no-such-job"));
      assert.equal(seen.length, 3);
      assert.equal(seen.at(-1), 2);
      assert.ok(seen.every((free) => free >= 1));
    });

    it("keeps working when onStateChange throws", async () => {
      const logger = capturingLogger();
      const pool = await makePool({
        logger,
        onStateChange: () => {
          throw new Error("listener bug");
        },
      });
      assert.deepEqual(await pool.post(task("noop")), { ok: true });
      assert.deepEqual(await pool.post(task("noop")), { ok: true });
      assert.equal(pool.availableCapacity(), 2);
      assert.equal(logger.entries.filter((entry) => entry.level === "error").length, 2);
    });

    it("lets in-flight runs finish after shutdown", async () => {
      const pool = await makePool();
      const running = pool.post(task("sleep", { ms: 50 }));
      pool.shutdown();
      assert.throws(() => pool.post(task("noop")), { code: "POOL_CLOSED" });
      assert.equal(await pool.waitForTermination(30_000), true);
      assert.deepEqual(await running, { ok: true });
      assert.equal(pool.isIdle(), true);
    });

    it("waitForTermination resolves false when a run outlives it", async () => {
      const pool = await makePool();
      const running = pool.post(task("await-abort"));
      pool.shutdown();
      assert.equal(await pool.waitForTermination(20), false);
      await pool.kill();
      assert.deepEqual(await running, { ok: false, error: KILLED });
    });

    it("kill aborts in-flight runs and settles their posts", async () => {
      const pool = await makePool();
      const runs = [pool.post(task("await-abort")), pool.post(task("await-abort"))];
      await pool.kill();
      assert.deepEqual(await Promise.all(runs), [
        { ok: false, error: KILLED },
        { ok: false, error: KILLED },
      ]);
      assert.equal(pool.isIdle(), true);
      assert.throws(() => pool.post(task("noop")), { code: "POOL_CLOSED" });
    });

    it("aborts one run through its post's signal and leaves the others alone", async () => {
      const pool = await makePool();
      const controller = new AbortController();
      const aborted = pool.post(task("await-abort"), { signal: controller.signal });
      const other = pool.post(task("sleep", { ms: 30 }));
      controller.abort(new Error("job timed out"));
      assert.deepEqual(await aborted, { ok: false, error: { name: "AbortError", message: "job timed out" } });
      assert.deepEqual(await other, { ok: true });
      assert.equal(pool.availableCapacity(), 2);
    });

    it("does not start a run whose lease ran out, unless extendLeases moved it out", async () => {
      const pool = await makePool();
      // "fail" would report its own error had it run.
      const expired = await pool.post(task("fail"), { leaseUntil: leaseClock() - 1 });
      assert.deepEqual(expired, leaseExpiredOutcome());
      assert.equal(pool.availableCapacity(), 2);
      pool.extendLeases(leaseClock() + 60_000);
      assert.deepEqual(await pool.post(task("noop"), { leaseUntil: leaseClock() - 1 }), { ok: true });
      assert.deepEqual(await pool.post(task("noop")), { ok: true }, "a post without a lease has no deadline");
    });

    it("does not start a run past its startBy (a rate limit's time to start), whatever extendLeases says", async () => {
      const pool = await makePool();
      pool.extendLeases(leaseClock() + 60_000);
      assert.deepEqual(
        await pool.post(task("fail"), { leaseUntil: leaseClock() + 60_000, startBy: leaseClock() - 1 }),
        leaseExpiredOutcome(),
      );
      assert.deepEqual(await pool.post(task("noop"), { startBy: leaseClock() + 60_000 }), { ok: true });
      assert.equal(pool.availableCapacity(), 2);
    });

    it("does not run a post whose signal is already aborted", async () => {
      const pool = await makePool();
      const outcome = await pool.post(task("noop"), { signal: AbortSignal.abort(new Error("too late")) });
      assert.deepEqual(outcome, { ok: false, error: { name: "AbortError", message: "too late" } });
      assert.equal(pool.availableCapacity(), 2);
    });
  });
}
