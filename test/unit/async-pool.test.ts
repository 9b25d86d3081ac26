import assert from "node:assert/strict";
import { afterEach, describe, it, mock } from "node:test";
import { defineJob } from "../../src/jobs/define.ts";
import { JobRegistry } from "../../src/jobs/registry.ts";
import { AsyncPool, type AsyncPoolOptions } from "../../src/pools/async-pool.ts";
import * as fixtureJobs from "../fixtures/pool-jobs.ts";
import { describePoolContract } from "./pools-contract.ts";
import { capturingLogger, deferred, task, within } from "./pools-helpers.ts";

describePoolContract("async");

describe("AsyncPool", () => {
  const pools: AsyncPool[] = [];
  const makePool = (options: Partial<AsyncPoolOptions> = {}): AsyncPool => {
    const pool = new AsyncPool({ capacity: 2, registry: new JobRegistry(Object.values(fixtureJobs)), ...options });
    pools.push(pool);
    return pool;
  };
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((pool) => pool.kill()));
    mock.restoreAll();
  });

  /** A registry whose one job hands its ctx.signal to the test and waits for it to abort. */
  function signalCapturingRegistry(): { registry: JobRegistry; signal: Promise<AbortSignal> } {
    const captured = deferred<AbortSignal>();
    const job = defineJob({
      name: "capture-signal",
      perform(_payload, { signal }) {
        captured.resolve(signal);
        return new Promise<void>((_resolve, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
      },
    });
    return { registry: new JobRegistry([job]), signal: captured.promise };
  }

  it("aborts the handler's ctx.signal when the post's signal aborts", async () => {
    const { registry, signal } = signalCapturingRegistry();
    const pool = makePool({ registry });
    const controller = new AbortController();
    const running = pool.post(task("capture-signal"), { signal: controller.signal });
    const ctxSignal = await signal;
    assert.equal(ctxSignal.aborted, false);
    const reason = new Error("job timed out");
    controller.abort(reason);
    assert.equal(ctxSignal.aborted, true);
    assert.equal(ctxSignal.reason, reason);
    assert.deepEqual(await running, { ok: false, error: { name: "AbortError", message: "job timed out" } });
  });

  it("kill aborts the handler's ctx.signal", async () => {
    const { registry, signal } = signalCapturingRegistry();
    const pool = makePool({ registry });
    const running = pool.post(task("capture-signal"));
    const ctxSignal = await signal;
    await pool.kill();
    assert.equal(ctxSignal.aborted, true);
    assert.equal((ctxSignal.reason as Error).name, "AbortError");
    assert.equal((await running).ok, false);
  });

  it("kill does not hang on handlers that ignore their signal", async () => {
    const pool = makePool({ killGraceMs: 20 });
    const running = pool.post(task("ignore-abort"));
    await pool.kill();
    assert.deepEqual(await running, { ok: false, error: { name: "AbortError", message: "execution pool was killed" } });
    assert.equal(pool.isIdle(), true);
  });

  it("reports a handler blocking the event loop, naming the job and pointing to threads mode", async () => {
    const logger = capturingLogger();
    const pool = makePool({ logger, blockedLoopThresholdMs: 50 });
    assert.deepEqual(await pool.post(task("cpu-burn", { ms: 200 })), { ok: true });
    const warning = await within(logger.first("warn"), 20_000, "block warning");
    assert.deepEqual(warning.fields.jobs, ["cpu-burn"]);
    assert.ok((warning.fields.blockedMs as number) >= 100, `blockedMs ${String(warning.fields.blockedMs)}`);
    assert.match(warning.msg, /event loop blocked/);
    assert.match(warning.msg, /executionMode: "threads"/);
  });

  it("does not report handlers that yield to the event loop, however long they run", async () => {
    const logger = capturingLogger();
    // A threshold a loaded machine's scheduling hiccups stay far below, and jobs in flight
    // for over twice as long: only a real block could be reported.
    const pool = makePool({ logger, blockedLoopThresholdMs: 500 });
    await Promise.all([pool.post(task("sleep", { ms: 1_200 })), pool.post(task("sleep", { ms: 600 }))]);
    assert.deepEqual(logger.entries, []);
  });

  it("runs the block-detection timer only while jobs are in flight", async () => {
    const started = mock.method(globalThis, "setInterval");
    const cleared = deferred<unknown>();
    const clearInterval = globalThis.clearInterval;
    mock.method(globalThis, "clearInterval", (timer: NodeJS.Timeout | undefined) => {
      clearInterval(timer);
      cleared.resolve(timer);
    });
    const pool = makePool({ blockedLoopThresholdMs: 40 });
    assert.equal(started.mock.callCount(), 0, "no timer while idle");
    await Promise.all([pool.post(task("sleep", { ms: 30 })), pool.post(task("noop"))]);
    assert.equal(started.mock.callCount(), 1, "one timer for concurrent jobs");
    // The timer outlives the last job by one tick, which measures that last stretch.
    assert.equal(await within(cleared.promise, 20_000, "timer cleared"), started.mock.calls[0]?.result, "timer cleared once idle");
    await pool.post(task("noop"));
    assert.equal(started.mock.callCount(), 2, "started again for the next job");
  });

  it("stops the block-detection timer on kill", async () => {
    const started = mock.method(globalThis, "setInterval");
    const stopped = mock.method(globalThis, "clearInterval");
    const pool = makePool();
    const running = pool.post(task("await-abort"));
    await pool.kill();
    await running;
    assert.equal(stopped.mock.calls.at(-1)?.arguments[0], started.mock.calls[0]?.result);
  });
});
