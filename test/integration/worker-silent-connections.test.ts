import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { type Logger } from "../../src/logger.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { type TcpProxy, startTcpProxy } from "../helpers/tcp-proxy.ts";

let db: TestDatabase;
let proxy: TcpProxy;

before(async () => {
  db = await createTestDatabase("silent");
  await new Pgbus({ connectionString: db.url }).migrate();
  const admin = new URL(db.url);
  proxy = await startTcpProxy({ host: admin.hostname, port: Number(admin.port || 5432) });
});
after(async () => {
  await proxy.close();
  await db.drop();
});

// A regression here hangs rather than fails: the timeout turns it into a failure.
test(
  "connections that go silent (no reset, no reply) are noticed, reported and replaced: the worker goes on and stop() returns",
  { timeout: 90_000 },
  async () => {
    const ran: number[] = [];
    const job = defineJob<{ n: number }>({
      name: "silent_job",
      queue: "silent",
      async perform({ n }) {
        ran.push(n);
      },
    });
    const errors: string[] = [];
    const logger: Logger = { debug() {}, info() {}, warn() {}, error: (_obj, msg) => void errors.push(String(msg)) };
    // The worker talks through the proxy; the producer goes straight to PostgreSQL.
    const workerBus = new Pgbus({ connectionString: proxy.urlFor(db.url), jobs: [job], logger });
    const producer = new Pgbus({ connectionString: db.url, jobs: [job] });
    const worker = workerBus.worker({ queues: ["silent"], capacity: 5, visibilityTimeoutSec: 4, pollIntervalMs: 100 });
    await worker.start();
    await producer.enqueue(job, { n: 0 });
    await waitFor(() => ran.includes(0), "a job before the silence", 10_000, 20);

    proxy.silence();
    await producer.enqueueMany(
      job,
      Array.from({ length: 20 }, (_, i) => ({ n: i + 1 })),
    );
    // The silent claim connections time out (bounded to half the VT), are reported and
    // replaced by new connections, which pass: every job runs.
    await waitFor(() => ran.length === 21, "every job after the silence", 30_000, 50);
    // A statement stuck on a silent connection fails after half the VT and is reported.
    await waitFor(() => errors.length > 0, "the stall to be reported, not kept silent", 15_000, 50);
    await worker.stop();
    await workerBus.close();
    await producer.close();
    assert.deepEqual(
      [...new Set(ran)].sort((a, b) => a - b),
      Array.from({ length: 21 }, (_, i) => i),
    );
  },
);
