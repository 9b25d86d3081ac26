import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";
import { defineJob } from "../../src/jobs/define.ts";
import { JobRegistry } from "../../src/jobs/registry.ts";
import { silentLogger } from "../../src/logger.ts";
import { SafeEmitter } from "../../src/observability/emitter.ts";
import type { WorkerEvents } from "../../src/observability/events.ts";
import { jobEnvelope } from "../../src/queue/envelope.ts";
import type { NotificationHandlers } from "../../src/worker/notifications.ts";
import { Worker, type WorkerOptions } from "../../src/worker/worker.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { MemoryWorkerStore } from "../helpers/memory-worker-store.ts";

/** The worker loop over an in-memory store: claim, run, settle, release, wildcard discovery. */
describe("Worker over an in-memory store", () => {
  const workers: Worker[] = [];
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((worker) => worker.stop()));
  });

  const ran: string[] = [];
  const gates = new Map<string, { release: () => void; promise: Promise<void> }>();
  const gate = (name: string) => {
    let release!: () => void;
    const promise = new Promise<void>((resolve) => (release = resolve));
    gates.set(name, { release, promise });
  };
  const ok = defineJob({
    name: "ok",
    queue: "q",
    async perform(payload: { n: number }) {
      ran.push(`ok:${payload.n}`);
    },
  });
  const flaky = defineJob({
    name: "flaky",
    queue: "q",
    maxRetries: 2,
    backoff: { baseMs: 0, maxMs: 0, jitter: 0 },
    async perform(_payload: unknown, ctx) {
      ran.push(`flaky:${ctx.attempt}`);
      throw new Error(`attempt ${ctx.attempt} failed`);
    },
  });
  /** Blocks the event loop for `ms`, as a frozen process or a long GC pause would; first runs `before`. */
  const hooks: { beforeBlock?: () => void } = {};
  const block = defineJob({
    name: "block",
    queue: "q",
    async perform(payload: { ms: number }) {
      ran.push("block");
      hooks.beforeBlock?.();
      const until = Date.now() + payload.ms;
      while (Date.now() < until) {
        // the whole process stalls
      }
    },
  });
  const slow = defineJob({
    name: "slow",
    queue: "q",
    async perform(payload: { gate: string }) {
      ran.push(`slow:${payload.gate}`);
      await gates.get(payload.gate)?.promise;
    },
  });

  function start(store: MemoryWorkerStore, options: Partial<WorkerOptions> = {}) {
    let handlers: NotificationHandlers | undefined;
    const events: Array<[keyof WorkerEvents, unknown]> = [];
    const emitter = new SafeEmitter<WorkerEvents>(() => silentLogger);
    for (const name of ["job:success", "job:failure", "job:dead"] as const)
      emitter.on(name, (payload) => void events.push([name, payload]));
    const worker = new Worker(
      { queues: ["q"], pollIntervalMs: 50, ...options },
      {
        store,
        registry: new JobRegistry([ok, flaky, slow, block]),
        logger: silentLogger,
        emitter,
        notifications: (given) => {
          handlers = given;
          return { start: async () => given.onConnected(), stop: async () => {} };
        },
      },
    );
    workers.push(worker);
    return { worker, events, notify: (queue: string) => handlers?.onNotification(queue) };
  }

  afterEach(() => {
    ran.length = 0;
    gates.clear();
  });

  test("runs every message once and archives it", async () => {
    const store = new MemoryWorkerStore();
    await store.ensureQueue("q");
    for (let n = 0; n < 25; n++) store.send("q", jobEnvelope("ok", { n }));
    const { worker } = start(store, { capacity: 4 });
    await worker.start();
    await waitFor(() => store.remaining("q").length === 0, "the queue to drain", 5_000, 5);
    await worker.stop();
    assert.equal(ran.length, 25);
    assert.equal(new Set(ran).size, 25);
    assert.equal(store.archived.get("q")?.length, 25);
    assert.equal(worker.stats().processed, 25);
  });

  test('ackMode "delete" deletes instead of archiving', async () => {
    const store = new MemoryWorkerStore();
    await store.ensureQueue("q");
    store.send("q", jobEnvelope("ok", { n: 1 }));
    const { worker } = start(store, { ackMode: "delete" });
    await worker.start();
    await waitFor(() => store.remaining("q").length === 0, "the ack", 5_000, 5);
    await worker.stop();
    assert.deepEqual(store.deleted.get("q"), ["1"]);
    assert.equal(store.archived.get("q"), undefined);
  });

  test("a failing job is retried with its backoff, then dead-lettered after maxRetries", async () => {
    const store = new MemoryWorkerStore();
    await store.ensureQueue("q");
    store.send("q", jobEnvelope("flaky", {}));
    const { worker, events } = start(store);
    await worker.start();
    await waitFor(() => store.dead.get("q")?.length === 1, "the dead letter", 5_000, 5);
    await worker.stop();
    assert.deepEqual(ran, ["flaky:1", "flaky:2", "flaky:3"]);
    assert.deepEqual(
      store.retries.map((retry) => retry.delayMs),
      [0, 0],
    );
    assert.equal(store.dead.get("q")![0]!.error.reason, "retries_exhausted");
    assert.deepEqual(
      events.map(([name]) => name),
      ["job:failure", "job:failure", "job:failure", "job:dead"],
    );
    assert.deepEqual(
      events.filter(([name]) => name === "job:failure").map(([, payload]) => (payload as { retryInMs: number | null }).retryInMs),
      [0, 0, null],
    );
  });

  test("a message that is not a job, and one for an unknown job, go to the DLQ without running", async () => {
    const store = new MemoryWorkerStore();
    await store.ensureQueue("q");
    store.send("q", { hello: "world" });
    store.send("q", jobEnvelope("nobody", {}));
    const { worker } = start(store);
    await worker.start();
    await waitFor(() => store.dead.get("q")?.length === 2, "two dead letters", 5_000, 5);
    await worker.stop();
    assert.deepEqual(ran, []);
    assert.deepEqual(
      store.dead.get("q")!.map((dead) => [dead.msgId, dead.error.reason, dead.error.name]),
      [
        ["1", "invalid_message", "InvalidMessageError"],
        ["2", "unknown_job", "UnknownJobError"],
      ],
    );
    assert.equal(worker.stats().failed, 0, "nothing ran, so nothing failed");
  });

  test("after a stall past the VT, prefetched messages another worker took meanwhile are given back, not run", async () => {
    const store = new MemoryWorkerStore();
    await store.ensureQueue("q");
    store.send("q", jobEnvelope("block", { ms: 1_500 }));
    for (let n = 0; n < 3; n++) store.send("q", jobEnvelope("ok", { n }));
    // While this worker stalls, its VT lapses and another worker claims the prefetched three.
    let takenOver: number[] = [];
    hooks.beforeBlock = () => {
      for (const row of store.remaining("q").slice(1)) {
        row.readCt++;
        row.vt = Date.now() + 60_000; // and holds them
      }
      takenOver = store
        .remaining("q")
        .slice(1)
        .map((row) => row.readCt);
    };
    const { worker } = start(store, { capacity: 1, prefetch: 3, visibilityTimeoutSec: 1 });
    await worker.start();
    await waitFor(() => ran.includes("block"), "the stalling job", 5_000, 5);
    await waitFor(() => store.released.length > 0, "the stale prefetched messages given back", 5_000, 5);
    await worker.stop();
    hooks.beforeBlock = undefined;
    assert.deepEqual(ran, ["block"], "none of the three ran here");
    assert.deepEqual(
      store.remaining("q").map((row) => row.readCt),
      takenOver,
      "the other worker's claims were left alone (the release was fenced out)",
    );
  });

  test("a message delivered more often than its retries allow goes to the DLQ as max_deliveries, unrun", async () => {
    const store = new MemoryWorkerStore();
    await store.ensureQueue("q");
    const id = store.send("q", jobEnvelope("flaky", {}));
    // flaky has maxRetries 2 (3 runs) and one spare delivery: its 5th delivery is refused.
    store.remaining("q")[0]!.readCt = 4;
    const { worker } = start(store);
    await worker.start();
    await waitFor(() => store.dead.get("q")?.length === 1, "the dead letter", 5_000, 5);
    await worker.stop();
    assert.deepEqual(ran, []);
    assert.deepEqual(
      store.dead.get("q")!.map((dead) => [dead.msgId, dead.error.reason, dead.error.name]),
      [[id, "max_deliveries", "MaxDeliveriesError"]],
    );
  });

  test("stop releases prefetched messages at once and waits for the running job", async () => {
    const store = new MemoryWorkerStore();
    await store.ensureQueue("q");
    gate("a");
    store.send("q", jobEnvelope("slow", { gate: "a" }));
    for (let n = 0; n < 3; n++) store.send("q", jobEnvelope("ok", { n }));
    const { worker } = start(store, { capacity: 1, prefetch: 3 });
    await worker.start();
    await waitFor(() => ran.includes("slow:a") && store.claims > 0, "the slow job to start", 5_000, 5);
    await waitFor(() => store.remaining("q").every((row) => row.readCt === 1), "the prefetch", 5_000, 5);
    const stopped = worker.stop();
    await waitFor(() => store.released.length > 0, "the release", 5_000, 5);
    assert.deepEqual(store.released[0], { queue: "q", ids: ["2", "3", "4"], started: false });
    let done = false;
    void stopped.then(() => (done = true));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(done, false, "stop waits for the running job");
    gates.get("a")!.release();
    await stopped;
    assert.deepEqual(store.archived.get("q"), ["1"]);
    assert.deepEqual(ran, ["slow:a"]);
    assert.deepEqual(
      store.remaining("q").map((row) => row.readCt),
      [0, 0, 0],
      "given back unrun: no attempt counted",
    );
  });

  test("a running job's VT is extended while it runs", async () => {
    const store = new MemoryWorkerStore();
    await store.ensureQueue("q");
    gate("b");
    store.send("q", jobEnvelope("slow", { gate: "b" }));
    const { worker } = start(store, { visibilityTimeoutSec: 1 });
    await worker.start();
    await waitFor(() => store.extended.length > 0, "a VT extension", 5_000, 10);
    assert.deepEqual([...store.extended[0]!], [["q", ["1"]]]);
    gates.get("b")!.release();
    await worker.stop();
  });

  test('["*"] picks up a queue created after start when told of it', async () => {
    const store = new MemoryWorkerStore();
    await store.ensureQueue("a");
    const { worker, notify } = start(store, { queues: ["*"] });
    await worker.start();
    assert.deepEqual(worker.queues, ["a"]);
    store.send("later", jobEnvelope("ok", { n: 7 }));
    notify("later");
    await waitFor(() => ran.includes("ok:7"), "the job in the new queue", 5_000, 5);
    assert.deepEqual(worker.queues, ["a", "later"]);
  });

  test("named queues are claimed in priority order", async () => {
    const store = new MemoryWorkerStore();
    for (const queue of ["low", "high"]) await store.ensureQueue(queue);
    for (let n = 0; n < 3; n++) store.send("low", jobEnvelope("ok", { n: 100 + n }));
    for (let n = 0; n < 3; n++) store.send("high", jobEnvelope("ok", { n }));
    const { worker } = start(store, { queues: ["high", "low"], capacity: 1, prefetch: 0 });
    await worker.start();
    await waitFor(() => ran.length === 6, "all six jobs", 5_000, 5);
    assert.deepEqual(ran.slice(0, 3), ["ok:0", "ok:1", "ok:2"]);
  });

  test("stop() during start() waits for the start, so nothing start() opens outlives stop()", async () => {
    const store = new MemoryWorkerStore();
    await store.ensureQueue("q");
    let listening = false;
    const worker = new Worker(
      { queues: ["q"], pollIntervalMs: 50 },
      {
        store,
        registry: new JobRegistry([ok]),
        logger: silentLogger,
        emitter: new SafeEmitter<WorkerEvents>(() => silentLogger),
        notifications: () => ({
          start: async () => {
            await new Promise((resolve) => setTimeout(resolve, 50)); // a LISTEN connection still connecting
            listening = true;
          },
          stop: async () => {
            listening = false;
          },
        }),
      },
    );
    const started = worker.start();
    await worker.stop();
    await started;
    assert.equal(listening, false, "the LISTEN opened by start() is closed by stop()");
    const claims = store.claims;
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(store.claims, claims, "no claim after stop()");
  });

  test("a dropped queue is skipped while the others keep running", async () => {
    const store = new MemoryWorkerStore();
    for (const queue of ["gone", "q"]) await store.ensureQueue(queue);
    const { worker } = start(store, { queues: ["gone", "q"] });
    await worker.start();
    store.dropQueue("gone");
    store.send("q", jobEnvelope("ok", { n: 1 }));
    await waitFor(() => ran.includes("ok:1"), "the job in the other queue", 5_000, 5);
  });
});
