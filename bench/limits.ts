// npm run bench:limits — what flow limits cost and whether they hold, in one run:
// 1. drain rate of no-op jobs, one worker: plain, with a concurrency limit configured but
//    not binding (100 keys, limit 10,000 each; and one limit of 1,000,000 for the whole job),
//    with a rate limit configured but not binding (1,000,000 per second); interleaved (plain
//    concurrency concurrency_no_key rate plain ...), median of BENCH_REPS rounds. The
//    acceptance: within 10% of plain.
// 2. two `pgbus start` processes (worker capacity 20 each): BENCH_CONC_JOBS (1,000) jobs of
//    15 ms over 3 keys, limit 2 per key, one worker child SIGKILLed a third of the way in:
//    the most runs of a key at once (must be 2), and whether all complete.
// 3. the same two processes: BENCH_RATE_JOBS (600) jobs on a queue limited to 50 starts per
//    second (config file): the most starts in any one-second window (acceptance: <= 52) and
//    the time from the enqueue to the last start against the ideal (jobs / 50 s; acceptance:
//    within ~15%).
// Runs 2 and 3 use the process-test fixtures (test/fixtures/process/limits-jobs.ts), whose
// handlers record their start and end in a `spans` table.
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { Pgbus } from "../src/bus.ts";
import { defineJob } from "../src/jobs/define.ts";
import { FIXTURE_CONFIG, type CliProcess, cliEnv, killAll, startCli } from "../test/fixtures/process/spawn.ts";
import { dropDatabase, freshDatabase, median, printTable } from "./support.ts";

const JOBS = Number(process.env.BENCH_JOBS ?? 20_000);
const CAPACITY = Number(process.env.BENCH_CAPACITY ?? 50);
const REPETITIONS = Number(process.env.BENCH_REPS ?? 3);
const CONC_JOBS = Number(process.env.BENCH_CONC_JOBS ?? 1_000);
const RATE_JOBS = Number(process.env.BENCH_RATE_JOBS ?? 600);
const RATE_LIMIT = 50;

const database = await freshDatabase("limits");
const pool = new pg.Pool({ connectionString: database.url, max: 10 });
const bus = new Pgbus({ pool });
await bus.migrate();

// ------------------------------------------------------------ 1. cost when not binding

/** Jobs run so far in the current drain (one drain at a time). */
let performed = 0;
const perform = (): void => void performed++;
const variants = {
  plain: defineJob<{ n: number }>({ name: "bench_plain", queue: "bench_plain", perform }),
  concurrency: defineJob<{ n: number }>({
    name: "bench_concurrency",
    queue: "bench_concurrency",
    concurrency: { key: (p) => String(p.n % 100), limit: 10_000 },
    perform,
  }),
  concurrency_no_key: defineJob<{ n: number }>({
    name: "bench_concurrency_no_key",
    queue: "bench_concurrency_no_key",
    concurrency: { limit: 1_000_000 },
    perform,
  }),
  rate: defineJob<{ n: number }>({
    name: "bench_rate",
    queue: "bench_rate",
    rateLimit: { limit: 1_000_000, intervalMs: 1_000 },
    perform,
  }),
};
const drainBus = new Pgbus({ pool, jobs: Object.values(variants) });

async function drain(kind: keyof typeof variants): Promise<number> {
  const job = variants[kind];
  for (let from = 0; from < JOBS; from += 5_000) {
    await drainBus.enqueueMany(
      job,
      Array.from({ length: Math.min(5_000, JOBS - from) }, (_, n) => ({ n: from + n })),
    );
  }
  const worker = drainBus.worker({ queues: [job.queue], capacity: CAPACITY, pollIntervalMs: 50 });
  performed = 0;
  const started = performance.now();
  await worker.start();
  // The runs in process, then the queue empty (the last acks): a count over the queue every
  // 10 ms during the drain would load the server being measured, more with every round's
  // dead rows.
  while (performed < JOBS) await sleep(10);
  while ((await drainBus.queues.metrics(job.queue)).queueLength > 0) await sleep(10);
  const seconds = (performance.now() - started) / 1000;
  await worker.stop();
  return JOBS / seconds;
}

const kinds = Object.keys(variants) as Array<keyof typeof variants>;
const rates = Object.fromEntries(kinds.map((kind) => [kind, [] as number[]])) as Record<keyof typeof variants, number[]>;
for (let rep = 0; rep < REPETITIONS; rep++) for (const kind of kinds) rates[kind].push(await drain(kind));
const plain = median(rates.plain);
console.log(`\nDrain: ${JOBS} no-op jobs, one worker, capacity ${CAPACITY}, limits configured but not binding, median of ${REPETITIONS}\n`);
printTable(
  ["variant", "jobs/s", "vs plain"],
  kinds.map((kind) => [kind, Math.round(median(rates[kind])), `${Math.round((median(rates[kind]) / plain) * 100)}%`]),
);

// ------------------------------------------------- 2 and 3. two processes, limits binding

await pool.query(`CREATE TABLE spans (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, msg_id bigint NOT NULL, key text NOT NULL,
                    pid integer NOT NULL, started_at timestamptz NOT NULL, ended_at timestamptz)`);
for (const queue of ["limited", "queue_paced"]) await bus.queues.createQueue(queue);
const config = {
  jobsModule: "./limits-jobs.ts",
  workers: [{ queues: ["limited", "queue_paced"], capacity: 20, visibilityTimeoutSec: 5 }],
  queues: { queue_paced: { rateLimit: { limit: RATE_LIMIT, intervalMs: 1_000 } } },
  logLevel: "warn",
};
const processes: CliProcess[] = [0, 1].map(() => startCli(["start", "--config", FIXTURE_CONFIG], cliEnv(database.url, config)));

const scalar = async (text: string, values: unknown[] = []): Promise<number> =>
  Number(Object.values((await pool.query(text, values)).rows[0] as object)[0]);

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 300_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(50);
  }
}

// Ready once both workers claim: one probe job per process would not tell them apart, so
// wait for their heartbeat rows.
await until("two worker processes", async () => (await scalar("SELECT count(*) FROM pgbus.processes WHERE role = 'worker'")) >= 2);

const keys = ["a", "b", "c"];
let started = performance.now();
await bus.queues.sendBatch(
  "limited",
  Array.from({ length: CONC_JOBS }, (_, n) => ({ job: "keyed", payload: { k: keys[n % 3], ms: 15 } })),
);
const done = "SELECT count(DISTINCT msg_id) FROM spans WHERE key IN ('a', 'b', 'c') AND ended_at IS NOT NULL";
await until("a third of the jobs", async () => (await scalar(done)) >= CONC_JOBS / 3);
const victim = (await pool.query<{ pid: number }>("SELECT pid FROM pgbus.processes WHERE role = 'worker' ORDER BY pid LIMIT 1")).rows[0]!
  .pid;
const killedAt = (performance.timeOrigin + performance.now()) / 1000;
process.kill(victim, "SIGKILL");
await until("every job", async () => (await scalar(done)) >= CONC_JOBS);
const concSeconds = (performance.now() - started) / 1000;
const mostPerKey = await scalar(
  `SELECT max(running) FROM (
     SELECT sum(delta) OVER (PARTITION BY key ORDER BY at, delta ROWS UNBOUNDED PRECEDING) AS running FROM (
       SELECT key, extract(epoch FROM started_at) AS at, 1 AS delta FROM spans WHERE key IN ('a', 'b', 'c')
       UNION ALL
       SELECT key, coalesce(extract(epoch FROM ended_at), $1), -1 FROM spans WHERE key IN ('a', 'b', 'c')) edges) r`,
  [killedAt],
);
const cut = await scalar("SELECT count(*) FROM spans WHERE key IN ('a', 'b', 'c') AND ended_at IS NULL");

started = performance.now();
await bus.queues.sendBatch(
  "queue_paced",
  Array.from({ length: RATE_JOBS }, () => ({ job: "queue_paced", payload: {} })),
);
await until("every rate-limited start", async () => (await scalar("SELECT count(*) FROM spans WHERE key = 'queue_paced'")) >= RATE_JOBS);
const rateSeconds = (performance.now() - started) / 1000;
const worstWindow = await scalar(
  `SELECT max(n) FROM (SELECT count(*) OVER (ORDER BY started_at RANGE BETWEEN CURRENT ROW AND interval '999.999 milliseconds' FOLLOWING) AS n
                         FROM spans WHERE key = 'queue_paced') w`,
);
const spread = await scalar("SELECT extract(epoch FROM max(started_at) - min(started_at)) FROM spans WHERE key = 'queue_paced'");
const ideal = RATE_JOBS / RATE_LIMIT;

console.log(`\nTwo pgbus start processes, worker capacity 20 each\n`);
printTable(
  ["run", "result", "acceptance"],
  [
    [`concurrency: ${CONC_JOBS} jobs of 15 ms, 3 keys, limit 2, one SIGKILL`, `most at once per key: ${mostPerKey}`, "<= 2"],
    [
      "",
      `all complete: ${(await scalar(done)) >= CONC_JOBS ? "yes" : "no"} in ${concSeconds.toFixed(1)} s; ${cut} run(s) cut by the kill`,
      "all",
    ],
    [`rate: ${RATE_JOBS} jobs, ${RATE_LIMIT} starts/s on the queue`, `most starts in any 1 s: ${worstWindow}`, `<= ${RATE_LIMIT + 2}`],
    [
      "",
      `enqueue to last start ${rateSeconds.toFixed(2)} s vs ideal ${ideal.toFixed(1)} s (${rateSeconds >= ideal ? "+" : ""}${Math.round((rateSeconds / ideal - 1) * 100)}%); first to last start ${spread.toFixed(2)} s`,
      "<= ~15% over",
    ],
  ],
);

await Promise.all(processes.map((cli) => (cli.signal("SIGTERM"), cli.exited)));
await killAll();
await drainBus.close();
await bus.close();
await pool.end();
await dropDatabase(database.name);
