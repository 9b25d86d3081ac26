// npm run bench:delayed — what delayed jobs and priorities cost the claim (issue #14), side by
// side in one run, interleaved, median of BENCH_REPS rounds:
// 1. drain of BENCH_READY ready no-op jobs (delete mode, one worker, capacity BENCH_CAPACITY)
//    with BENCH_DELAYED delayed jobs (due in an hour) in the same queue, ahead of them in
//    msg_id order, against the same drain with none (acceptance: >= 80%);
// 2. the same drain with priorities mixed (0-9, enqueued in interleaved chunks) against all
//    at the default priority;
// 3. lateness (start time minus runAt) of BENCH_LATE_JOBS delayed jobs whose runAt is spread
//    over BENCH_LATE_SPREAD_MS, while a producer keeps the worker busy with 5 ms jobs
//    (BENCH_FILLERS_PER_SEC of them: a quarter of what capacity 100 can run),
//    against the same on an idle queue (acceptance: p99 <= 1.5 s while busy).
// Full size (the defaults): npm run bench:delayed
// Tiny: BENCH_READY=2000 BENCH_DELAYED=5000 BENCH_LATE_JOBS=50 BENCH_LATE_SPREAD_MS=2000 BENCH_REPS=1 npm run bench:delayed
import pg from "pg";
import { Pgbus } from "../src/bus.ts";
import { type JobDefinition, defineJob } from "../src/jobs/define.ts";
import { dropDatabase, freshDatabase, median, peakSampler, percentile, printTable } from "./support.ts";

const READY = Number(process.env.BENCH_READY ?? 50_000);
const DELAYED = Number(process.env.BENCH_DELAYED ?? 100_000);
const CAPACITY = Number(process.env.BENCH_CAPACITY ?? 100);
const REPETITIONS = Number(process.env.BENCH_REPS ?? 3);
const LATE_JOBS = Number(process.env.BENCH_LATE_JOBS ?? 1_000);
const LATE_SPREAD_MS = Number(process.env.BENCH_LATE_SPREAD_MS ?? 10_000);
const FILLERS_PER_SEC = Number(process.env.BENCH_FILLERS_PER_SEC ?? 5_000);
const CHUNK = 5_000;

const database = await freshDatabase("delayed");
const pool = new pg.Pool({ connectionString: database.url, max: 10 });
const bus = new Pgbus({ pool });
await bus.migrate();

/** Counts runs of one queue's jobs; `until(n)` resolves once n have run since the last reset. */
function counter() {
  let runs = 0;
  let target = Number.POSITIVE_INFINITY;
  let done: () => void = () => {};
  return {
    run() {
      if (++runs === target) done();
    },
    until(n: number): Promise<void> {
      runs = 0;
      target = n;
      return new Promise((resolve) => (done = resolve));
    },
  };
}

const counters = new Map<string, ReturnType<typeof counter>>();
function drainJob(queue: string): JobDefinition<{ n: number }> {
  const count = counter();
  counters.set(queue, count);
  return defineJob<{ n: number }>({ name: queue, queue, perform: () => count.run() });
}

async function enqueueReady(job: JobDefinition<{ n: number }>, mixedPriorities: boolean): Promise<void> {
  for (let from = 0; from < READY; from += CHUNK) {
    const payloads = Array.from({ length: Math.min(CHUNK, READY - from) }, (_, n) => ({ n: from + n }));
    if (!mixedPriorities) {
      await bus.enqueueMany(job, payloads);
      continue;
    }
    // Interleaved: each chunk spread over the ten levels, so every level has old and new messages.
    for (let level = 0; level < 10; level++) {
      await bus.enqueueMany(
        job,
        payloads.filter((_, index) => index % 10 === level),
        { priority: level },
      );
    }
  }
}

/** Jobs/s of one drain of READY ready jobs. */
async function drain(job: JobDefinition<{ n: number }>, mixedPriorities = false): Promise<number> {
  await enqueueReady(job, mixedPriorities);
  const ran = counters.get(job.queue)!.until(READY);
  const worker = bus.worker({ queues: [job.queue], capacity: CAPACITY, pollIntervalMs: 50, ackMode: "delete" });
  const started = performance.now();
  await worker.start();
  await ran;
  const seconds = (performance.now() - started) / 1000;
  await worker.stop();
  return READY / seconds;
}

// 1 and 2: the drains.
const none = drainJob("bd_none");
const delayed = drainJob("bd_delayed");
const mixed = drainJob("bd_mixed");
for (let from = 0; from < DELAYED; from += CHUNK) {
  await bus.enqueueMany(
    delayed,
    Array.from({ length: Math.min(CHUNK, DELAYED - from) }, (_, n) => ({ n: -1 - from - n })),
    { delayMs: 3_600_000 },
  );
}
await pool.query("VACUUM ANALYZE");
await drain(none); // warm-up (connections, prepared statements, JIT), not counted
const rates = { none: [] as number[], delayed: [] as number[], mixed: [] as number[] };
for (let rep = 0; rep < REPETITIONS; rep++) {
  rates.none.push(await drain(none));
  rates.delayed.push(await drain(delayed));
  rates.mixed.push(await drain(mixed, true));
}
const base = median(rates.none);
const row = (what: string, values: number[]) => [what, Math.round(median(values)), `${Math.round((median(values) / base) * 100)}%`];
console.log(`\nDrain: ${READY} ready no-op jobs, delete mode, one worker, capacity ${CAPACITY}, median of ${REPETITIONS}\n`);
printTable(
  ["queue", "jobs/s", "vs none"],
  [
    row("no delayed jobs, default priority", rates.none),
    row(`${DELAYED} delayed jobs in the queue`, rates.delayed),
    row("priorities 0-9 mixed", rates.mixed),
  ],
);

// 3: lateness of delayed jobs, busy queue against idle.
const lateness: number[] = [];
const late = defineJob<{ runAt: number }>({
  name: "bl_late",
  queue: "bl_late",
  perform: ({ runAt }) => void lateness.push(Date.now() - runAt),
});
const filler = defineJob<{ n: number }>({
  name: "bl_filler",
  queue: "bl_late",
  perform: () => new Promise((resolve) => setTimeout(resolve, 5)),
});
await bus.queues.createQueue("bl_late");

async function latenessRound(busy: boolean): Promise<{ p50: number; p99: number; max: number; fillers: number; peakBacklog: number }> {
  lateness.length = 0;
  const worker = bus.worker({ queues: ["bl_late"], capacity: CAPACITY, ackMode: "delete" });
  await worker.start();
  let producing = busy;
  let fillers = 0;
  // Every 50 ms: busy all the time, without a growing backlog (the peak backlog is reported).
  const perTick = Math.max(1, Math.round(FILLERS_PER_SEC / 20));
  const backlog = peakSampler(async () => (await bus.queues.metrics("bl_late")).visibleLength, 100);
  const producer = (async () => {
    while (producing) {
      await bus.enqueueMany(
        filler,
        Array.from({ length: perTick }, (_, n) => ({ n })),
      );
      fillers += perTick;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  const start = Date.now() + 1_000;
  await Promise.all(
    Array.from({ length: LATE_JOBS }, async (_, index) => {
      const runAt = start + Math.round((index / LATE_JOBS) * LATE_SPREAD_MS);
      await bus.enqueue(late, { runAt }, { runAt: new Date(runAt) });
    }),
  );
  const deadline = start + LATE_SPREAD_MS + 30_000;
  while (lateness.length < LATE_JOBS && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  producing = false;
  await producer;
  const peakBacklog = await backlog.stop();
  await worker.stop();
  await bus.queues.purgeQueue("bl_late"); // fillers left over must not make the next round busy
  if (lateness.length < LATE_JOBS) throw new Error(`only ${lateness.length} of ${LATE_JOBS} delayed jobs ran`);
  return { p50: percentile(lateness, 50), p99: percentile(lateness, 99), max: Math.max(...lateness), fillers, peakBacklog };
}

const rounds = {
  busy: [] as Array<Awaited<ReturnType<typeof latenessRound>>>,
  idle: [] as Array<Awaited<ReturnType<typeof latenessRound>>>,
};
for (let rep = 0; rep < REPETITIONS; rep++) {
  rounds.busy.push(await latenessRound(true));
  rounds.idle.push(await latenessRound(false));
}
console.log(
  `\nLateness (start minus runAt) of ${LATE_JOBS} delayed jobs, runAt spread over ${LATE_SPREAD_MS} ms, capacity ${CAPACITY}, default poll (1 s), median of ${REPETITIONS}\n`,
);
const lateRow = (what: string, list: Array<Awaited<ReturnType<typeof latenessRound>>>) => [
  what,
  `${median(list.map((r) => r.p50))} ms`,
  `${median(list.map((r) => r.p99))} ms`,
  `${median(list.map((r) => r.max))} ms`,
  Math.round(median(list.map((r) => r.fillers))),
  Math.round(median(list.map((r) => r.peakBacklog))),
];
printTable(
  ["queue", "p50", "p99", "max", "filler jobs enqueued", "peak due backlog"],
  [lateRow("busy (5 ms filler jobs)", rounds.busy), lateRow("idle", rounds.idle)],
);

await bus.close();
await pool.end();
await dropDatabase(database.name);
