// npm run bench:pools — async vs threads execution pools at capacity 10, 50 and 100, side by
// side in one run: no-op and I/O-bound throughput, single-job latency, peak RSS and peak
// PostgreSQL connections held by the worker. Every drain checks that each message ran and
// was archived exactly once (duplicates and losses are reported, and fail the run), and
// gives up after BENCH_TIMEOUT_SECONDS.
import { fileURLToPath } from "node:url";
import pg from "pg";
import { Pgbus } from "../src/bus.ts";
import type { ExecutionMode } from "../src/pools/types.ts";
import { io20, noop } from "./jobs.ts";
import {
  RUN_TIMEOUT_MS,
  RunTracker,
  connectionCounter,
  dropDatabase,
  freshDatabase,
  median,
  peakSampler,
  percentile,
  printTable,
} from "./support.ts";

const JOBS_MODULE = fileURLToPath(new URL("./jobs.ts", import.meta.url));
const NOOP_JOBS = Number(process.env.BENCH_NOOP_JOBS ?? 20_000);
const IO_JOBS = Number(process.env.BENCH_IO_JOBS ?? 5_000);
const LATENCY_SAMPLES = Number(process.env.BENCH_LATENCY_SAMPLES ?? 100);
const CAPACITIES = [10, 50, 100];
const MODES: ExecutionMode[] = ["async", "threads"];

const { name: dbName, url } = await freshDatabase("pools");
/** Duplicates, losses and timeouts seen: printed at the end, and the exit code is 1 if any. */
const problems: string[] = [];
const bus = new Pgbus({ connectionString: url, jobs: [noop, io20] });
await bus.migrate();
const connections = connectionCounter(url, "pgbus:worker");
const admin = new pg.Pool({ connectionString: url, max: 1 });

interface Row {
  mode: ExecutionMode;
  capacity: number;
  noopPerSec: number;
  ioPerSec: number;
  ioIdealPct: number;
  p50: number;
  p95: number;
  p99: number;
  rssMb: number;
  connections: number;
}

/** Runs `count` queued jobs through a fresh worker; returns jobs/s, peak RSS and connections. */
async function drain(mode: ExecutionMode, capacity: number, job: typeof noop | typeof io20, count: number) {
  await bus.queues.purgeQueue("bench");
  await admin.query("TRUNCATE pgmq.a_bench");
  const ids: string[] = [];
  for (let sent = 0; sent < count; sent += 10_000) {
    ids.push(
      ...(await bus.enqueueMany(
        job as typeof noop,
        Array.from({ length: Math.min(10_000, count - sent) }, () => ({})),
      )),
    );
  }
  const tracker = new RunTracker(ids);
  const rss = peakSampler(() => process.memoryUsage().rss);
  const conns = peakSampler(() => connections.count());
  const worker = bus.worker({ queues: ["bench"], capacity, executionMode: mode, jobsModule: JOBS_MODULE, ackMode: "archive" });
  const off = bus.on("job:success", (event) => void tracker.record(event.messageId));
  const started = performance.now();
  await worker.start();
  const complete = await tracker.waitAll(RUN_TIMEOUT_MS);
  const seconds = (performance.now() - started) / 1000;
  await worker.stop();
  off();
  const what = `${mode} capacity ${capacity} ${job.name}`;
  const verdict = tracker.verdict(what);
  if (!complete) problems.push(`${what}: timed out after ${RUN_TIMEOUT_MS / 1000} s`);
  if (!verdict.ok) problems.push(verdict.line);
  const archived = (await admin.query("SELECT count(*)::int AS n, count(DISTINCT msg_id)::int AS d FROM pgmq.a_bench")).rows[0];
  if (archived.n !== count || archived.d !== count)
    problems.push(`${what}: ${archived.d} distinct of ${archived.n} archived, expected ${count}`);
  // Distinct messages per second: a duplicate run adds nothing.
  return { perSec: tracker.distinct / seconds, rss: await rss.stop(), connections: await conns.stop() };
}

/** Enqueue-to-start latency of single jobs sent into an idle worker, 20 ms apart. */
async function latency(mode: ExecutionMode, capacity: number): Promise<number[]> {
  await bus.queues.purgeQueue("bench");
  const worker = bus.worker({ queues: ["bench"], capacity, executionMode: mode, jobsModule: JOBS_MODULE, pollIntervalMs: 60_000 });
  await worker.start();
  const samples: number[] = [];
  for (let i = 0; i < LATENCY_SAMPLES + 5; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    let off = () => {};
    const startedAt = new Promise<number>((resolve) => {
      off = bus.on("job:start", () => {
        off();
        resolve(performance.now());
      });
    });
    const sentAt = performance.now();
    await bus.enqueue(noop, {});
    // A job that never starts is reported, not waited for forever.
    const ran = await Promise.race([startedAt, new Promise<null>((resolve) => setTimeout(() => resolve(null), 30_000).unref())]);
    if (ran === null) {
      off();
      problems.push(`latency ${mode} capacity ${capacity}: sample ${i} did not start within 30 s`);
      continue;
    }
    if (i >= 5) samples.push(ran - sentAt); // the first few warm up prepared statements
  }
  await worker.stop();
  return samples;
}

const rows: Row[] = [];
for (const capacity of CAPACITIES) {
  for (const mode of MODES) {
    const noopRun = await drain(mode, capacity, noop, NOOP_JOBS);
    const ioRun = await drain(mode, capacity, io20, IO_JOBS);
    const lat = await latency(mode, capacity);
    const ideal = capacity / 0.02;
    rows.push({
      mode,
      capacity,
      noopPerSec: noopRun.perSec,
      ioPerSec: ioRun.perSec,
      ioIdealPct: (100 * ioRun.perSec) / ideal,
      p50: median(lat),
      p95: percentile(lat, 95),
      p99: percentile(lat, 99),
      rssMb: Math.max(noopRun.rss, ioRun.rss) / 1024 / 1024,
      connections: Math.max(noopRun.connections, ioRun.connections),
    });
    console.error(`done: ${mode} capacity ${capacity}`);
  }
}

console.log(
  `\nExecution pools: ${NOOP_JOBS} no-op jobs, ${IO_JOBS} I/O jobs (20 ms timer), ${LATENCY_SAMPLES} latency samples; ack mode archive\n`,
);
printTable(
  [
    "mode",
    "capacity",
    "no-op jobs/s",
    "I/O jobs/s",
    "I/O % of ideal",
    "latency p50 ms",
    "p95 ms",
    "p99 ms",
    "peak RSS MB",
    "peak PG conns",
  ],
  rows.map((r) => [r.mode, r.capacity, r.noopPerSec, r.ioPerSec, r.ioIdealPct, r.p50, r.p95, r.p99, r.rssMb, r.connections]),
);

await connections.close();
await admin.end();
await bus.close();
await dropDatabase(dbName);
if (problems.length > 0) {
  console.error(`\nFAILED: not every message ran exactly once:\n${problems.join("\n")}`);
  process.exit(1);
}
console.log("\nEvery message ran and was archived exactly once.");
