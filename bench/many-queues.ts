// npm run bench:many-queues — one `*` worker (capacity 100) over BENCH_QUEUES queues
// (default 1,000). Busy: BENCH_JOBS no-op jobs (default 100,000) in one queue against the
// same jobs spread over 10 queues (the last ten in claim order, the worst case), rounds
// interleaved, BENCH_REPS of them (default 3), medians; the target is 10 queues within 20%
// of one. Idle: the worker alone for BENCH_IDLE_SECONDS (default 10): its CPU and the
// database transactions it causes per second (pg_stat_database.xact_commit of the bench
// database, the sampler's own left out); each backstop poll is one statement.
import pg from "pg";
import { Pgbus } from "../src/bus.ts";
import { defineJob } from "../src/jobs/define.ts";
import { RUN_TIMEOUT_MS, RunTracker, dropDatabase, freshDatabase, median, printTable } from "./support.ts";

const QUEUES = Number(process.env.BENCH_QUEUES ?? 1_000);
const JOBS = Number(process.env.BENCH_JOBS ?? 100_000);
const CAPACITY = Number(process.env.BENCH_CAPACITY ?? 100);
const REPETITIONS = Number(process.env.BENCH_REPS ?? 3);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 10);
const BUSY = 10;
const BATCH = 10_000;

const database = await freshDatabase("many_queues");
const pool = new pg.Pool({ connectionString: database.url, max: 2, application_name: "bench" });
const names = Array.from({ length: QUEUES }, (_, i) => `mq_${String(i).padStart(5, "0")}`);
let tracker = new RunTracker(0);
const jobs = new Map(
  names.map((queue) => [queue, defineJob<{ n: number }>({ name: `job_${queue}`, queue, perform: ({ n }) => void tracker.record(n) })]),
);
const bus = new Pgbus({ connectionString: database.url, jobs: [...jobs.values()] });
await bus.migrate();
// Queues in batches of one statement each (no DLQs: a `*` worker skips them anyway).
for (let from = 0; from < QUEUES; from += 100) {
  await pool.query("SELECT pgbus.ensure_queue(name, false) FROM unnest($1::text[]) AS name", [names.slice(from, from + 100)]);
}

async function drain(queues: string[]): Promise<number> {
  tracker = new RunTracker(JOBS);
  let n = 0;
  for (const queue of queues) {
    const share = JOBS / queues.length;
    for (let sent = 0; sent < share; sent += BATCH) {
      await bus.enqueueMany(
        jobs.get(queue)!,
        Array.from({ length: Math.min(BATCH, share - sent) }, () => ({ n: n++ })),
      );
    }
  }
  const worker = bus.worker({ queues: ["*"], capacity: CAPACITY });
  await worker.start();
  const started = performance.now();
  const done = await tracker.waitAll(RUN_TIMEOUT_MS);
  const seconds = (performance.now() - started) / 1000;
  await worker.stop();
  const { ok, line } = tracker.verdict(`${queues.length} busy queue(s)`);
  if (!done || !ok) throw new Error(line);
  return JOBS / seconds;
}

if (JOBS % BUSY !== 0) throw new Error(`BENCH_JOBS must be a multiple of ${BUSY}, got ${JOBS}`);
const one = [names.at(-1)!];
const ten = names.slice(-BUSY);
const rates = { one: [] as number[], ten: [] as number[] };
for (let rep = 0; rep < REPETITIONS; rep++) {
  rates.one.push(await drain(one));
  rates.ten.push(await drain(ten));
}

// Idle: the worker alone; the sampler's two statements are subtracted.
const commits = async () =>
  Number((await pool.query("SELECT xact_commit AS n FROM pg_stat_database WHERE datname = current_database()")).rows[0].n);
const worker = bus.worker({ queues: ["*"], capacity: CAPACITY });
await worker.start();
await new Promise((resolve) => setTimeout(resolve, 2_000)); // past start-up
await pool.query("SELECT pg_stat_clear_snapshot()");
const before = await commits();
const cpuBefore = process.cpuUsage();
await new Promise((resolve) => setTimeout(resolve, IDLE_SECONDS * 1000));
const cpu = process.cpuUsage(cpuBefore);
await new Promise((resolve) => setTimeout(resolve, 600)); // statistics are flushed about every 500 ms
const transactions = (await commits()) - before - 2;
await worker.stop();

const oneRate = median(rates.one);
const tenRate = median(rates.ten);
console.log(
  `\nMany queues: one \`*\` worker, capacity ${CAPACITY}, over ${QUEUES.toLocaleString("en-US")} queues; ${JOBS.toLocaleString("en-US")} no-op jobs, median of ${REPETITIONS}\n`,
);
printTable(
  ["work in", "jobs/s", "vs one queue"],
  [
    ["1 queue", Math.round(oneRate), "100%"],
    [`${BUSY} queues`, Math.round(tenRate), `${Math.round((tenRate / oneRate) * 100)}%`],
  ],
);
console.log(`\nIdle over ${QUEUES.toLocaleString("en-US")} queues for ${IDLE_SECONDS} s (poll interval 1 s)\n`);
printTable(
  ["worker CPU", "database transactions/s"],
  [[`${(((cpu.user + cpu.system) / 1e6 / IDLE_SECONDS) * 100).toFixed(2)}% of a core`, (transactions / IDLE_SECONDS).toFixed(1)]],
);
await bus.close();
await pool.end();
await dropDatabase(database.name);
